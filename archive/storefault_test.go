package archive_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/storeenv"
)

// lostResponses forwards every request to the real server but, for the
// first `left` requests that match, drops the response as a connection reset
// after the server acted would. A real server cannot be made to do this on
// demand; it is what a flaky network does to a write.
type lostResponses struct {
	match func(*http.Request) bool
	left  atomic.Int32
	hits  atomic.Int32
}

func (l *lostResponses) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && l.match(req) && l.left.Add(-1) >= 0 {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		l.hits.Add(1)
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	}
	return resp, err
}

// testRetriedCreate: the first create's response is lost after the object
// landed; the store retries, finds the object there, recognises it as its
// own and succeeds, as write-once locks need. Another writer still loses.
func testRetriedCreate(t *testing.T, s archive.Store, lost *lostResponses) {
	ctx := context.Background()
	lost.left.Store(1)
	if err := s.Put(ctx, "locks/x/0000000000000001", strings.NewReader("mine"), 4); err != nil {
		t.Fatalf("put whose first response was lost: %v", err)
	}
	if lost.hits.Load() != 1 {
		t.Fatalf("fault injected %d times, want 1", lost.hits.Load())
	}
	if got := readAll(t, s, "locks/x/0000000000000001"); got != "mine" {
		t.Fatalf("object = %q", got)
	}
	if err := s.Put(ctx, "locks/x/0000000000000001", strings.NewReader("theirs"), 6); !errors.Is(err, archive.ErrExist) {
		t.Fatalf("second writer: err = %v, want ErrExist", err)
	}
}

func readAll(t *testing.T, s archive.Store, name string) string {
	t.Helper()
	rc, err := s.Get(context.Background(), name, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestGCSRetriedCreateFindsItsOwnObject(t *testing.T) {
	g := testenv.FakeGCSServer(t)
	g.SetEnv(t)
	lost := &lostResponses{match: func(r *http.Request) bool {
		return r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/upload/storage/v1/")
	}}
	u, _ := url.Parse("gs://" + g.NewBucket(t) + "/p")
	s, err := archive.OpenGCSWithTransport(context.Background(), u, lost)
	if err != nil {
		t.Fatal(err)
	}
	testRetriedCreate(t, s, lost)
}

func TestAzureRetriedCreateFindsItsOwnObject(t *testing.T) {
	a := storeenv.AzuriteServer(t)
	a.SetEnv(t)
	lost := &lostResponses{match: func(r *http.Request) bool {
		return r.Method == http.MethodPut && r.URL.Query().Get("comp") == ""
	}}
	u, _ := url.Parse("azblob://" + a.NewContainer(t) + "/p")
	s, err := archive.OpenAzureWithTransport(context.Background(), u, lost)
	if err != nil {
		t.Fatal(err)
	}
	testRetriedCreate(t, s, lost)
}

// brokenDownloads forwards requests but, for the first `left` responses
// that match, cuts the body after `after` bytes with a connection reset.
type brokenDownloads struct {
	match func(*http.Request) bool
	after int
	left  atomic.Int32
	hits  atomic.Int32
}

func (b *brokenDownloads) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && b.match(req) && resp.StatusCode/100 == 2 && b.left.Add(-1) >= 0 {
		b.hits.Add(1)
		resp.Body = &cutBody{ReadCloser: resp.Body, left: b.after}
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

// testResumedDownload: a download that breaks mid-way resumes where it
// stopped, and the reader sees the object whole.
func testResumedDownload(t *testing.T, s archive.Store, broken *brokenDownloads) {
	ctx := context.Background()
	data := mixedData(3 << 20)
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

func TestGCSDownloadResumes(t *testing.T) {
	g := testenv.FakeGCSServer(t)
	g.SetEnv(t)
	broken := &brokenDownloads{after: 100 << 10, match: func(r *http.Request) bool {
		return r.Method == http.MethodGet && r.URL.Query().Get("alt") == "media"
	}}
	u, _ := url.Parse("gs://" + g.NewBucket(t) + "/p")
	s, err := archive.OpenGCSWithTransport(context.Background(), u, broken)
	if err != nil {
		t.Fatal(err)
	}
	testResumedDownload(t, s, broken)
}

func TestAzureDownloadResumes(t *testing.T) {
	a := storeenv.AzuriteServer(t)
	a.SetEnv(t)
	broken := &brokenDownloads{after: 100 << 10, match: func(r *http.Request) bool {
		return r.Method == http.MethodGet && r.URL.Query().Get("comp") == "" && r.URL.Query().Get("restype") == ""
	}}
	u, _ := url.Parse("azblob://" + a.NewContainer(t) + "/p")
	s, err := archive.OpenAzureWithTransport(context.Background(), u, broken)
	if err != nil {
		t.Fatal(err)
	}
	testResumedDownload(t, s, broken)
}
