package postgres

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to begin writing a range to disk now,
// without waiting: the disk works while later chunks are fetched, and the
// fsync at the end of the file has little left to wait for (PostgreSQL's
// *_flush_after settings do the same). Failures only lose the head start.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn() // not Fd(): that switches the file to blocking mode each call
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) { unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE) })
}
