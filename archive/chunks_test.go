package archive_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/file"
	"github.com/tidemark/tidemark/archive/store/storetest"
)

func writeFile(t *testing.T, r *archive.Repository, data []byte, mode archive.ChunkMode) ([]archive.ChunkRef, archive.ChunkStats) {
	t.Helper()
	ctx := context.Background()
	w, err := r.NewChunkWriter(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := w.WriteFile(ctx, bytes.NewReader(data), mode)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return refs, w.Stats()
}

func readBack(t *testing.T, r *archive.Repository, refs []archive.ChunkRef) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := r.ReadChunks(context.Background(), refs, &buf, 4); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestChunkDedupAligned(t *testing.T) {
	id := identity(t)
	r, dir := newRepo(t, archive.InitOptions{Recipients: []string{id.Recipient().String()}})
	r, err := reopen(t, dir, archive.Keys{Identities: []age.Identity{id}})
	if err != nil {
		t.Fatal(err)
	}
	data := storetest.MixedData(8<<20 + 12345)
	refs, st := writeFile(t, r, data, archive.Aligned)
	if st.NewChunks != 9 || st.DedupChunks != 0 || len(refs) != 9 {
		t.Fatalf("first write: %+v, %d refs", st, len(refs))
	}
	if !bytes.Equal(readBack(t, r, refs), data) {
		t.Fatal("aligned round trip differs")
	}
	// Same data again (a new writer, so the index is what dedups): nothing new.
	_, st = writeFile(t, r, data, archive.Aligned)
	if st.NewChunks != 0 || st.DedupChunks != 9 {
		t.Fatalf("second write stored new chunks: %+v", st)
	}
	// One changed 8 KiB page changes exactly one chunk.
	copy(data[3<<20+8192:], bytes.Repeat([]byte{0xAB}, 8192))
	refs2, st := writeFile(t, r, data, archive.Aligned)
	if st.NewChunks != 1 {
		t.Fatalf("one changed page stored %d chunks", st.NewChunks)
	}
	if !bytes.Equal(readBack(t, r, refs2), data) {
		t.Fatal("changed-page round trip differs")
	}
}

func TestChunkDedupContentDefinedSurvivesShift(t *testing.T) {
	r, _ := newRepo(t, archive.InitOptions{NoEncrypt: true})
	data := make([]byte, 24<<20)
	rand.Read(data)
	_, st1 := writeFile(t, r, data, archive.ContentDefined)
	// Insert 100 bytes near the start: every later byte shifts.
	shifted := append(append(bytes.Clone(data[:1000]), bytes.Repeat([]byte{7}, 100)...), data[1000:]...)
	refs, st2 := writeFile(t, r, shifted, archive.ContentDefined)
	if st2.NewChunks > 2 {
		t.Fatalf("a 100-byte insertion stored %d new chunks of %d", st2.NewChunks, st1.NewChunks)
	}
	if !bytes.Equal(readBack(t, r, refs), shifted) {
		t.Fatal("content-defined round trip differs")
	}
}

// TestSwappedChunkDetected: a valid chunk object put in another chunk's
// place (same size, so the pack still parses) is caught by the id check.
func TestSwappedChunkDetected(t *testing.T) {
	ctx := context.Background()
	r, dir := newRepo(t, archive.InitOptions{NoEncrypt: true, Compression: "none"})
	a, b := storetest.MixedData(1<<20), storetest.MixedData(1<<20)
	refsA, _ := writeFile(t, r, a, archive.Aligned)
	refsB, _ := writeFile(t, r, b, archive.Aligned)
	packA, offA, lenA, err := r.ChunkLocation(ctx, refsA[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	packB, offB, lenB, err := r.ChunkLocation(ctx, refsB[0].ID)
	if err != nil || lenA != lenB {
		t.Fatalf("locations: %d vs %d bytes, %v", lenA, lenB, err)
	}
	bytesB, err := os.ReadFile(filepath.Join(dir, packB))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, packA), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytesB[offB:offB+lenB], offA); err != nil {
		t.Fatal(err)
	}
	f.Close()
	err = r.ReadChunks(ctx, refsA, &bytes.Buffer{}, 1)
	if !errors.Is(err, archive.ErrCorrupt) || !strings.Contains(err.Error(), packA) {
		t.Fatalf("swapped chunk: %v", err)
	}
	rep, err := r.Verify(ctx, nil)
	if err != nil || rep.OK() || !strings.Contains(strings.Join(rep.Problems, "\n"), packA) {
		t.Fatalf("verify over a swapped chunk: %+v, %v", rep, err)
	}
}

func TestManifestReferences(t *testing.T) {
	ctx := context.Background()
	r, _ := newRepo(t, archive.InitOptions{NoEncrypt: true})
	keep, _ := writeFile(t, r, storetest.MixedData(2<<20), archive.Aligned)
	orphan, _ := writeFile(t, r, storetest.MixedData(1<<20), archive.Aligned)
	m := &archive.Manifest{ID: archive.NewManifestID(timeNow()), Engine: "test",
		Files: []archive.FileEntry{{Path: "f", Size: 2 << 20, Chunks: keep}}}
	if err := r.CommitManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	ids, err := r.ListManifests(ctx)
	if err != nil || len(ids) != 1 || ids[0] != m.ID {
		t.Fatalf("manifests = %v, %v", ids, err)
	}
	got, err := r.ReadManifest(ctx, m.ID)
	if err != nil || len(got.Files) != 1 || got.Files[0].Chunks[1] != keep[1] {
		t.Fatalf("read manifest: %+v, %v", got, err)
	}
	unref, err := r.UnreferencedChunks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(unref) != 1 || unref[0] != orphan[0].ID {
		t.Fatalf("unreferenced = %v, want the orphan %v", unref, orphan[0].ID)
	}
}

func timeNow() time.Time { return time.Now() }

// failingPuts is a file store whose pack uploads fail after taking every
// byte, as a failed fsync or a refused multipart completion would: only
// closing the pack can notice.
type failingPuts struct {
	*file.Store
}

func (f failingPuts) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if strings.HasPrefix(name, "packs/") {
		io.Copy(io.Discard, r)
		return errors.New("disk full (injected)")
	}
	return f.Store.Put(ctx, name, r, size)
}

// TestPackFailureFailsTheWriter: a pack the store did not take fails the
// backup — from WriteFile or at the latest from Commit — and no index
// names its chunks, so nothing deduplicates against them.
func TestPackFailureFailsTheWriter(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fs, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Init(ctx, fs, archive.InitOptions{NoEncrypt: true, Compression: "none"}); err != nil {
		t.Fatal(err)
	}
	r, err := archive.Open(ctx, failingPuts{fs}, archive.Keys{})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 40<<20) // more than two packs
	rand.Read(data)
	w, err := r.NewChunkWriter(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.WriteFile(ctx, bytes.NewReader(data), archive.Aligned)
	if err == nil {
		err = w.Commit(ctx)
	}
	w.Abort()
	if err == nil || !strings.Contains(err.Error(), "disk full (injected)") {
		t.Fatalf("a failed pack upload: %v", err)
	}
	unref, err := r.UnreferencedChunks(ctx)
	if err != nil || len(unref) != 0 {
		t.Fatalf("chunks of failed packs indexed: %d, %v", len(unref), err)
	}
}
