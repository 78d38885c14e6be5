package postgres

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestWriteFiles: files of every shape — empty, tiny, big and block-aligned
// (written with O_DIRECT), big and unaligned, content-defined chunks,
// repeated chunks — come back byte for byte with their mtimes, whatever
// order the workers finish in; a corrupt chunk fails the restore, naming
// the file.
func TestWriteFiles(t *testing.T) {
	ctx := context.Background()
	repo := testenv.NewRepo(t)
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(16)) // compressible, never repeating
		}
		return b
	}
	contents := map[string][]byte{
		"empty":          {},
		"tiny":           []byte("hello"),
		"base/1/16384":   random(3<<20 + 8192),
		"base/1/16384.1": random(1 << 20),
		"unaligned":      random(2<<20 + 100),
		"cdc":            random(5 << 20),
		"repeats":        bytes.Repeat(random(1<<20), 3),
	}
	w, err := repo.NewChunkWriter(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var files []archive.FileEntry
	for name, data := range contents {
		mode := archive.Aligned
		if name == "cdc" {
			mode = archive.ContentDefined
		}
		refs, err := w.WriteFile(ctx, bytes.NewReader(data), mode)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, archive.FileEntry{Path: name, Size: int64(len(data)), Mode: 0o600, ModTime: mtime, Chunks: refs})
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var written atomic.Int64 // progress is called by the workers concurrently
	if err := writeFiles(ctx, repo.Repository, dir, files, 4, func(n int64) { written.Add(n) }); err != nil {
		t.Fatal(err)
	}
	var total int64
	for name, want := range contents {
		total += int64(len(want))
		p := filepath.Join(dir, name)
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s restored with %d bytes (want %d), %v", name, len(got), len(want), err)
		}
		if fi, _ := os.Stat(p); !fi.ModTime().Equal(mtime) {
			t.Fatalf("%s mtime %v", name, fi.ModTime())
		}
	}
	if written.Load() != total {
		t.Fatalf("progress counted %d bytes of %d", written.Load(), total)
	}

	// Corrupt one chunk of the big file: the restore fails and says which file.
	var big archive.FileEntry
	for _, f := range files {
		if f.Path == "base/1/16384" {
			big = f
		}
	}
	pack, off, n, err := repo.ChunkLocation(ctx, big.Chunks[2].ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(repo.Dir, pack))
	b[off+n/2] ^= 1
	os.WriteFile(filepath.Join(repo.Dir, pack), b, 0o600)
	err = writeFiles(ctx, repo.Repository, t.TempDir(), files, 4, nil)
	if !errors.Is(err, archive.ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte("base/1/16384")) {
		t.Fatalf("restore over a corrupt chunk: %v", err)
	}
}
