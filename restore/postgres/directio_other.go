//go:build !linux

package postgres

import (
	"os"

	"github.com/tidemark/tidemark/archive"
)

// O_DIRECT is used on Linux only (see directio_linux.go).
func directIO(archive.FileEntry) bool { return false }

func openOut(p string, perm os.FileMode, _ bool) (*os.File, bool, error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	return f, false, err
}

func alignedBuffer(n int) []byte { return make([]byte, n) }

func aligned([]byte) bool { return true }
