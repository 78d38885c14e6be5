package postgres

import (
	"errors"
	"os"
	"syscall"
	"unsafe"

	"github.com/tidemark/tidemark/archive"
)

// Big relation files are written with O_DIRECT. Going through the page
// cache, a restore copies every byte into memory the database will not read
// soon, and the fsync at the end then waits for all of it to be written
// back: the kernel's copy and writeback, not the network or the CPU, bound
// the restore. Direct writes of whole 1 MiB blocks go to the device as they
// come; the fsync only settles metadata.
const directBlock = 4096

// directIO reports whether f can be written with O_DIRECT: big, and every
// chunk a whole number of blocks (so every write is aligned).
func directIO(f archive.FileEntry) bool {
	if f.Size < archive.AlignedChunkSize || f.Size%directBlock != 0 {
		return false
	}
	for _, c := range f.Chunks {
		if c.Size%directBlock != 0 {
			return false
		}
	}
	return true
}

// openOut creates p, with O_DIRECT when direct, and reports whether it got
// it: file systems without O_DIRECT (tmpfs) refuse the open, and one with
// stricter alignment than directBlock would refuse the writes, so a first
// block is written as a probe (the file's first chunk overwrites it).
func openOut(p string, perm os.FileMode, direct bool) (*os.File, bool, error) {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if direct {
		f, err := os.OpenFile(p, flags|syscall.O_DIRECT, perm)
		if err == nil {
			if _, err = f.WriteAt(alignedBuffer(directBlock), 0); err == nil {
				return f, true, nil
			}
			f.Close()
			if !errors.Is(err, syscall.EINVAL) {
				return nil, false, err
			}
			return reopenOut(p)
		}
		if !errors.Is(err, syscall.EINVAL) {
			return nil, false, err
		}
	}
	f, err := os.OpenFile(p, flags, perm)
	return f, false, err
}

func reopenOut(p string) (*os.File, bool, error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	return f, false, err
}

// alignedBuffer returns n bytes starting on a block boundary.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+directBlock)
	skip := (directBlock - int(uintptr(unsafe.Pointer(&b[0]))%directBlock)) % directBlock
	return b[skip : skip+n : skip+n]
}

func aligned(b []byte) bool {
	return len(b) == 0 || uintptr(unsafe.Pointer(&b[0]))%directBlock == 0
}
