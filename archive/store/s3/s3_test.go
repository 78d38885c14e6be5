package s3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/retry"
	"github.com/tidemark/tidemark/archive/store/storetest"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/storeenv"
)

// TestMain stops the server (MinIO) the package's tests started.
func TestMain(m *testing.M) { testenv.Main(m) }

// TestS3StoreConformance runs the store suite against a real MinIO server,
// under a prefix to prove prefixes are honoured, with small listing pages.
func TestS3StoreConformance(t *testing.T) {
	m := storeenv.MinIOServer(t)
	m.SetEnv(t)
	bucket := m.NewBucket(t)
	n := 0
	storetest.Run(t, func(t *testing.T) archive.Store {
		n++
		u, _ := url.Parse("s3://" + bucket + "/repo" + string(rune('a'+n%26)) + "/" + t.Name())
		s, err := Open(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		s.pageSize = 100
		return s
	}, storetest.Options{})
}

// TestS3URLsCarryNoSecrets: user info or a query in an s3:// URL is
// refused, like gs:// and Azure URLs, and the message never repeats it.
func TestS3URLsCarryNoSecrets(t *testing.T) {
	for _, raw := range []string{"s3://user:secret@bucket/p", "s3://bucket/p?sig=secret", "s3://:secret@/p", "s3://bucket/p#secret"} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Open(context.Background(), u)
		if !errors.Is(err, archive.ErrBadURL) || strings.Contains(err.Error(), "secret") {
			t.Errorf("open %s: %v", raw, err)
		}
	}
}

// TestS3RetriedCreateFindsItsOwnObject: the SDK repeats a create whose
// response was lost; the repeat is refused (the first landed) and the put
// token shows the object is ours, so the Put succeeds.
func TestS3RetriedCreateFindsItsOwnObject(t *testing.T) {
	lost := &storetest.LostResponses{Match: func(r *http.Request) bool {
		return r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == ""
	}}
	storetest.RetriedCreate(t, openFaulty(t, lost), lost)
}

// TestS3ReadsLogNothing: ranged reads carry no whole-object checksum; the
// SDK used to log a line to stderr for each (a thousand lines in a verify).
func TestS3ReadsLogNothing(t *testing.T) {
	out := captureStderr(t, func() {
		s := openFaulty(t, http.DefaultTransport) // the SDK takes its logger's stderr when opened
		data := storetest.MixedData(10 << 20)     // multipart: stored with part checksums
		if err := s.Put(context.Background(), "big", bytes.NewReader(data), int64(len(data))); err != nil {
			t.Error(err)
			return
		}
		for _, r := range []struct{ off, n int64 }{{0, 100}, {4 << 20, 1 << 20}, {0, -1}} {
			rc, err := s.Get(context.Background(), "big", r.off, r.n)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, rc)
			rc.Close()
		}
	})
	if out != "" {
		t.Fatalf("reads wrote to stderr:\n%s", out)
	}
}

// captureStderr returns what fn wrote to the process's stderr.
func captureStderr(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = w
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); done <- b }()
	fn()
	os.Stderr = saved
	w.Close()
	return string(<-done)
}

// openFaulty opens a store on a fresh MinIO bucket whose HTTP requests go
// through rt.
func openFaulty(t *testing.T, rt http.RoundTripper) *Store {
	t.Helper()
	m := storeenv.MinIOServer(t)
	m.SetEnv(t)
	t.Setenv("AWS_CA_BUNDLE", "") // a CA bundle needs the SDK's own client; MinIO here speaks plain HTTP
	u, _ := url.Parse("s3://" + m.NewBucket(t) + "/p")
	s, err := open(context.Background(), u, config.WithHTTPClient(&http.Client{Transport: rt}))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestS3DownloadResumes: a download cut mid-way resumes where it stopped,
// through the retrying decorator every store is opened with.
func TestS3DownloadResumes(t *testing.T) {
	broken := &storetest.BrokenDownloads{After: 100 << 10, Match: func(r *http.Request) bool { return r.Method == http.MethodGet }}
	storetest.ResumedDownload(t, retry.Wrap(openFaulty(t, broken), retry.Options{}), broken)
}
