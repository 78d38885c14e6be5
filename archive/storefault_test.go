package archive_test

import (
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
	a := testenv.AzuriteServer(t)
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
