package archive_test

import (
	"os"
	"path/filepath"
	"testing"
)

// flipByte damages a stored object in place, as bit rot or a stray write
// would: the byte at off (from the end when negative) is inverted.
func flipByte(t *testing.T, dir, name string, off int64) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += int64(len(b))
	}
	b[off] ^= 0xff
	if err := os.WriteFile(p, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// remove deletes a stored object behind the repository's back.
func remove(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(name))); err != nil {
		t.Fatal(err)
	}
}
