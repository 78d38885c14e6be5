package storetest

// Faults a real server cannot produce on demand, injected between a store's
// client and the server (a store's tests open it over these transports).

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/tidemark/tidemark/archive"
)

// LostResponses is an http.RoundTripper that forwards every request to the
// real server but, for as many requests that Match as RetriedCreate arms it
// for, drops the response as a connection reset after the server acted
// would. A real server cannot be made to do this on demand; it is what a
// flaky network does to a write.
type LostResponses struct {
	Match func(*http.Request) bool
	left  atomic.Int32
	hits  atomic.Int32
}

// RoundTrip implements http.RoundTripper.
func (l *LostResponses) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && l.Match(req) && l.left.Add(-1) >= 0 {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		l.hits.Add(1)
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	}
	return resp, err
}

// RetriedCreate checks a store opened over lost: the first create's
// response is lost after the object landed; the store retries, finds the
// object there, recognises it as its own and succeeds, as write-once locks
// need. Another writer still loses.
func RetriedCreate(t *testing.T, s archive.Store, lost *LostResponses) {
	t.Helper()
	ctx := context.Background()
	lost.left.Store(1)
	if err := s.Put(ctx, "locks/x/0000000000000001", strings.NewReader("mine"), 4); err != nil {
		t.Fatalf("put whose first response was lost: %v", err)
	}
	if lost.hits.Load() != 1 {
		t.Fatalf("fault injected %d times, want 1", lost.hits.Load())
	}
	if got := get(t, s, "locks/x/0000000000000001", 0, -1); string(got) != "mine" {
		t.Fatalf("object = %q", got)
	}
	if err := s.Put(ctx, "locks/x/0000000000000001", strings.NewReader("theirs"), 6); !errors.Is(err, archive.ErrExist) {
		t.Fatalf("second writer: err = %v, want ErrExist", err)
	}
}

// BrokenDownloads is an http.RoundTripper that forwards requests but, for
// as many successful responses that Match as ResumedDownload arms it for,
// cuts the body after After bytes with a connection reset.
type BrokenDownloads struct {
	Match func(*http.Request) bool
	After int
	left  atomic.Int32
	hits  atomic.Int32
}

// RoundTrip implements http.RoundTripper.
func (b *BrokenDownloads) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && b.Match(req) && resp.StatusCode/100 == 2 && b.left.Add(-1) >= 0 {
		b.hits.Add(1)
		resp.Body = &cutBody{ReadCloser: resp.Body, left: b.After}
	}
	return resp, err
}

type cutBody struct {
	io.ReadCloser
	left int
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.ReadCloser.Read(p)
	c.left -= n
	return n, err
}

// ResumedDownload checks a store opened over broken: a download that
// breaks mid-way resumes where it stopped, and the reader sees the object
// whole.
func ResumedDownload(t *testing.T, s archive.Store, broken *BrokenDownloads) {
	t.Helper()
	ctx := context.Background()
	data := MixedData(3 << 20)
	if err := s.Put(ctx, "big", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	broken.left.Store(2)
	for _, r := range []struct{ off, n int64 }{{0, -1}, {1 << 20, 1 << 20}} {
		rc, err := s.Get(ctx, "big", r.off, r.n)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		end := int64(len(data))
		if r.n >= 0 {
			end = r.off + r.n
		}
		if err != nil || !bytes.Equal(got, data[r.off:end]) {
			t.Fatalf("read [%d,+%d) through a broken connection: %d bytes, err %v", r.off, r.n, len(got), err)
		}
	}
	if broken.hits.Load() != 2 {
		t.Fatalf("fault injected %d times, want 2", broken.hits.Load())
	}
}

// MixedData is n bytes of which every other 4 KiB block is random and the
// rest compressible, as real data tends to be.
func MixedData(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	for off := 0; off < n; off += 8192 {
		end := min(off+4096, n)
		for i := off; i < end; i++ {
			b[i] = byte("tidemark "[i%9])
		}
	}
	return b
}
