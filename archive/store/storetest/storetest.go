// Package storetest is the conformance suite every archive.Store must pass.
// Each backend's tests call Run with a constructor for a fresh, empty store.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tidemark/tidemark/archive"
)

// Options tunes the suite for slower backends.
type Options struct {
	// LargeSize is the size of the streamed large-object test; it should cross
	// the backend's multipart threshold. Default 64 MiB.
	LargeSize int64
	// ManyObjects is the object count of the pagination test; it should exceed
	// one listing page (stores that can, are set to small pages by their
	// tests). Default 1200.
	ManyObjects int
}

// Run runs the whole suite. newStore must return an empty store each call.
func Run(t *testing.T, newStore func(t *testing.T) archive.Store, opts Options) {
	if opts.LargeSize == 0 {
		opts.LargeSize = 64 << 20
	}
	if opts.ManyObjects == 0 {
		opts.ManyObjects = 1200
	}
	t.Run("PutGet", func(t *testing.T) { testPutGet(t, newStore(t)) })
	t.Run("WriteOnce", func(t *testing.T) { testWriteOnce(t, newStore(t)) })
	t.Run("Ranges", func(t *testing.T) { testRanges(t, newStore(t)) })
	t.Run("NotExist", func(t *testing.T) { testNotExist(t, newStore(t)) })
	t.Run("ListOrderAndPrefix", func(t *testing.T) { testList(t, newStore(t)) })
	t.Run("ListMany", func(t *testing.T) { testListMany(t, newStore(t), opts.ManyObjects) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newStore(t)) })
	t.Run("Large", func(t *testing.T) { testLarge(t, newStore(t), opts.LargeSize) })
	t.Run("ConcurrentWriters", func(t *testing.T) { testConcurrentWriters(t, newStore(t)) })
	t.Run("ConcurrentLargeWriters", func(t *testing.T) { testConcurrentLargeWriters(t, newStore(t)) })
	t.Run("FailedPutInvisible", func(t *testing.T) { testFailedPut(t, newStore(t)) })
	t.Run("BadNames", func(t *testing.T) { testBadNames(t, newStore(t)) })
}

func put(t *testing.T, s archive.Store, name string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), name, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
}

func get(t *testing.T, s archive.Store, name string, off, length int64) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), name, off, length)
	if err != nil {
		t.Fatalf("get %s [%d,+%d): %v", name, off, length, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return b
}

func testPutGet(t *testing.T, s archive.Store) {
	data := []byte("hello, tidemark")
	put(t, s, "a/b/c", data)
	if got := get(t, s, "a/b/c", 0, -1); !bytes.Equal(got, data) {
		t.Fatalf("get = %q, want %q", got, data)
	}
	info, err := s.Stat(context.Background(), "a/b/c")
	if err != nil || info.Size != int64(len(data)) || info.Name != "a/b/c" {
		t.Fatalf("stat = %+v, %v", info, err)
	}
	// Empty objects are legal.
	put(t, s, "empty", nil)
	if got := get(t, s, "empty", 0, -1); len(got) != 0 {
		t.Fatalf("empty object read %d bytes", len(got))
	}
	// Unknown size (-1) must work too.
	if err := s.Put(context.Background(), "unsized", strings.NewReader("xyz"), -1); err != nil {
		t.Fatalf("put with unknown size: %v", err)
	}
	if got := get(t, s, "unsized", 0, -1); string(got) != "xyz" {
		t.Fatalf("unsized = %q", got)
	}
}

func testWriteOnce(t *testing.T, s archive.Store) {
	put(t, s, "once", []byte("first"))
	err := s.Put(context.Background(), "once", strings.NewReader("second"), 6)
	if !errors.Is(err, archive.ErrExist) {
		t.Fatalf("second put: err = %v, want ErrExist", err)
	}
	if got := get(t, s, "once", 0, -1); string(got) != "first" {
		t.Fatalf("object changed by refused put: %q", got)
	}
	// The same through the multipart/resumable/staged path of a streamed
	// object larger than any backend's part, chunk or block, refused at its
	// commit: a small object must not be replaced by a large one.
	err = s.Put(context.Background(), "once", &patternReader{n: 12 << 20}, -1)
	if !errors.Is(err, archive.ErrExist) {
		t.Fatalf("second, streamed put: err = %v, want ErrExist", err)
	}
	if got := get(t, s, "once", 0, -1); string(got) != "first" {
		t.Fatalf("object changed by refused streamed put: %d bytes", len(got))
	}
}

func testRanges(t *testing.T, s archive.Store) {
	data := make([]byte, 100000)
	rand.Read(data)
	put(t, s, "r", data)
	for _, c := range []struct{ off, n int64 }{{0, 10}, {10, 1}, {99990, 10}, {500, -1}, {0, -1}, {12345, 54321}, {100000, -1}} {
		got := get(t, s, "r", c.off, c.n)
		end := int64(len(data))
		if c.n >= 0 {
			end = c.off + c.n
		}
		if !bytes.Equal(got, data[c.off:end]) {
			t.Fatalf("range [%d,+%d): got %d bytes, mismatch", c.off, c.n, len(got))
		}
	}
}

func testNotExist(t *testing.T, s archive.Store) {
	ctx := context.Background()
	if _, err := s.Get(ctx, "missing/x", 0, -1); !errors.Is(err, archive.ErrNotExist) {
		t.Fatalf("get missing: err = %v, want ErrNotExist", err)
	}
	if _, err := s.Stat(ctx, "missing/x"); !errors.Is(err, archive.ErrNotExist) {
		t.Fatalf("stat missing: err = %v, want ErrNotExist", err)
	}
	if err := s.Delete(ctx, "missing/x"); err != nil {
		t.Fatalf("delete missing: %v", err)
	}
}

func listNames(t *testing.T, s archive.Store, prefix, after string) []string {
	t.Helper()
	var names []string
	err := s.List(context.Background(), prefix, after, func(o archive.ObjectInfo) error {
		names = append(names, o.Name)
		return nil
	})
	if err != nil {
		t.Fatalf("list %q after %q: %v", prefix, after, err)
	}
	return names
}

func testList(t *testing.T, s archive.Store) {
	for _, n := range []string{"wal/2", "wal/1", "wal/10/x", "walrus", "base/1", "wal/3"} {
		put(t, s, n, []byte(n))
	}
	got := strings.Join(listNames(t, s, "wal/", ""), ",")
	if want := "wal/1,wal/10/x,wal/2,wal/3"; got != want {
		t.Fatalf("list wal/ = %s, want %s", got, want)
	}
	got = strings.Join(listNames(t, s, "wal", ""), ",")
	if want := "wal/1,wal/10/x,wal/2,wal/3,walrus"; got != want {
		t.Fatalf("list wal = %s, want %s", got, want)
	}
	got = strings.Join(listNames(t, s, "wal/", "wal/10/x"), ",")
	if want := "wal/2,wal/3"; got != want {
		t.Fatalf("list wal/ after wal/10/x = %s, want %s", got, want)
	}
	got = strings.Join(listNames(t, s, "", ""), ",")
	if want := "base/1,wal/1,wal/10/x,wal/2,wal/3,walrus"; got != want {
		t.Fatalf("list all = %s, want %s", got, want)
	}
	stop := errors.New("stop")
	n := 0
	err := s.List(context.Background(), "", "", func(archive.ObjectInfo) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("callback error not propagated: n=%d err=%v", n, err)
	}
}

func testListMany(t *testing.T, s archive.Store, count int) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	errs := make(chan error, count)
	for i := 0; i < count; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			name := fmt.Sprintf("many/%06d", i)
			if err := s.Put(context.Background(), name, strings.NewReader(name), int64(len(name))); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	names := listNames(t, s, "many/", "")
	if len(names) != count {
		t.Fatalf("listed %d objects, want %d", len(names), count)
	}
	for i, n := range names {
		if want := fmt.Sprintf("many/%06d", i); n != want {
			t.Fatalf("name %d = %s, want %s", i, n, want)
		}
	}
	after := listNames(t, s, "many/", fmt.Sprintf("many/%06d", count-5))
	if len(after) != 4 {
		t.Fatalf("start-after listing gave %d names, want 4", len(after))
	}
	// From the middle, across the remaining pages.
	mid := count / 2
	after = listNames(t, s, "many/", fmt.Sprintf("many/%06d", mid))
	if len(after) != count-mid-1 || after[0] != fmt.Sprintf("many/%06d", mid+1) {
		t.Fatalf("start-after the middle gave %d names from %v, want %d", len(after), after[:min(1, len(after))], count-mid-1)
	}
	// A start-after name that is not itself stored.
	after = listNames(t, s, "many/", fmt.Sprintf("many/%06d~", mid))
	if len(after) != count-mid-1 {
		t.Fatalf("start-after a missing name gave %d names, want %d", len(after), count-mid-1)
	}
}

func testDelete(t *testing.T, s archive.Store) {
	put(t, s, "d/1", []byte("x"))
	put(t, s, "d/2", []byte("y"))
	if err := s.Delete(context.Background(), "d/1"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(listNames(t, s, "d/", ""), ","); got != "d/2" {
		t.Fatalf("after delete: %s", got)
	}
	// A deleted name can be written again.
	put(t, s, "d/1", []byte("z"))
	if got := get(t, s, "d/1", 0, -1); string(got) != "z" {
		t.Fatalf("rewritten object = %q", got)
	}
}

// patternReader yields a deterministic byte stream without holding it in memory.
type patternReader struct{ n, off int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	if rem := r.n - r.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	for i := range p {
		x := uint64(r.off + int64(i))
		p[i] = byte(x*2654435761>>13) ^ byte(x>>20)
	}
	r.off += int64(len(p))
	return len(p), nil
}

func testLarge(t *testing.T, s archive.Store, size int64) {
	ctx := context.Background()
	if err := s.Put(ctx, "large", &patternReader{n: size}, -1); err != nil {
		t.Fatalf("put large: %v", err)
	}
	info, err := s.Stat(ctx, "large")
	if err != nil || info.Size != size {
		t.Fatalf("stat large = %+v, %v", info, err)
	}
	rc, err := s.Get(ctx, "large", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	want := &patternReader{n: size}
	a, b := make([]byte, 1<<20), make([]byte, 1<<20)
	var total int64
	for {
		n, err := io.ReadFull(rc, a)
		if n > 0 {
			if _, err := io.ReadFull(want, b[:n]); err != nil {
				t.Fatalf("large object longer than written: %v", err)
			}
			if !bytes.Equal(a[:n], b[:n]) {
				t.Fatalf("large object differs near offset %d", total)
			}
			total += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatalf("read large at %d: %v", total, err)
		}
	}
	if total != size {
		t.Fatalf("read %d bytes, want %d", total, size)
	}
}

// race runs writers Puts of one name at once, each from the reader open
// gives it, and fails unless exactly one succeeds and the others get ErrExist.
func race(t *testing.T, s archive.Store, name string, writers int, open func(i int) io.Reader) {
	t.Helper()
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			err := s.Put(context.Background(), name, open(i), -1)
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, archive.ErrExist):
			default:
				t.Errorf("writer %d: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d writers succeeded on one name, want exactly 1", wins.Load())
	}
}

func testConcurrentWriters(t *testing.T, s archive.Store) {
	race(t, s, "contended", 8, func(i int) io.Reader {
		return bytes.NewReader(bytes.Repeat([]byte{byte('a' + i)}, 64<<10))
	})
	got := get(t, s, "contended", 0, -1)
	if len(got) != 64<<10 || !bytes.Equal(got, bytes.Repeat(got[:1], len(got))) {
		t.Fatalf("contended object is a mix of writers (%d bytes)", len(got))
	}
}

// xorReader is a patternReader whose bytes are flipped by key, so each
// writer's stream differs.
type xorReader struct {
	patternReader
	key byte
}

func (x *xorReader) Read(p []byte) (int, error) {
	n, err := x.patternReader.Read(p)
	for i := range p[:n] {
		p[i] ^= x.key
	}
	return n, err
}

// testConcurrentLargeWriters races streamed objects larger than a part,
// chunk or block: uploads interleave and the commit decides. Exactly one
// wins, and the object is that writer's data, whole.
func testConcurrentLargeWriters(t *testing.T, s archive.Store) {
	const writers, size = 3, 10 << 20
	race(t, s, "contended-large", writers, func(i int) io.Reader {
		return &xorReader{patternReader{n: size}, byte(i + 1)}
	})
	got := get(t, s, "contended-large", 0, -1)
	if len(got) != size {
		t.Fatalf("contended object has %d bytes, want %d", len(got), size)
	}
	key := got[0] ^ func() byte { b := make([]byte, 1); (&patternReader{n: 1}).Read(b); return b[0] }()
	want := make([]byte, size)
	io.ReadFull(&xorReader{patternReader{n: size}, key}, want)
	if key == 0 || key > writers || !bytes.Equal(got, want) {
		t.Fatalf("contended object is not one writer's data (key %d)", key)
	}
}

// failingReader returns some data and then an error, as a broken upstream would.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("upstream broke")
	}
	if len(p) > r.n {
		p = p[:r.n]
	}
	for i := range p {
		p[i] = 'x'
	}
	r.n -= len(p)
	return len(p), nil
}

func testFailedPut(t *testing.T, s archive.Store) {
	ctx := context.Background()
	for _, size := range []int{1000, 12 << 20} {
		name := fmt.Sprintf("failed-%d", size)
		if err := s.Put(ctx, name, &failingReader{n: size}, -1); err == nil {
			t.Fatalf("put from a failing reader succeeded")
		}
		if _, err := s.Stat(ctx, name); !errors.Is(err, archive.ErrNotExist) {
			t.Fatalf("failed put left a visible object: stat err = %v", err)
		}
		if names := listNames(t, s, name, ""); len(names) != 0 {
			t.Fatalf("failed put visible in listing: %v", names)
		}
		// The name stays usable.
		put(t, s, name, []byte("ok"))
	}
	// A cancelled context fails the put too.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Put(cctx, "cancelled", strings.NewReader("x"), 1); err == nil {
		t.Fatalf("put with cancelled context succeeded")
	}
	// Cancelled midway through a streamed upload: nothing becomes visible.
	cctx, cancel = context.WithCancel(ctx)
	defer cancel()
	r := &cancellingReader{r: &patternReader{n: 24 << 20}, at: 10 << 20, cancel: cancel}
	if err := s.Put(cctx, "cancelled-midway", r, -1); err == nil {
		t.Fatalf("put cancelled midway succeeded")
	}
	if _, err := s.Stat(ctx, "cancelled-midway"); !errors.Is(err, archive.ErrNotExist) {
		t.Fatalf("put cancelled midway left a visible object: stat err = %v", err)
	}
}

// cancellingReader cancels its context once at bytes were read, as a caller
// giving up mid-upload would.
type cancellingReader struct {
	r      io.Reader
	n, at  int
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	if c.n >= c.at {
		c.cancel()
	}
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func testBadNames(t *testing.T, s archive.Store) {
	for _, n := range []string{"", "/abs", "a/../b", "a//b", "./a", "dir/", "a\\b"} {
		if err := s.Put(context.Background(), n, strings.NewReader("x"), 1); err == nil {
			t.Fatalf("put accepted bad name %q", n)
		}
	}
}
