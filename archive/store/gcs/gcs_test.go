package gcs

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/api/option"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/storetest"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestMain stops the server (fake-gcs-server) the package's tests started.
func TestMain(m *testing.M) { testenv.Main(m) }

// TestGCSStoreConformance runs the store suite against fake-gcs-server,
// under a prefix to prove prefixes are honoured, with small listing pages.
func TestGCSStoreConformance(t *testing.T) {
	g := testenv.FakeGCSServer(t)
	g.SetEnv(t)
	bucket := g.NewBucket(t)
	storetest.Run(t, func(t *testing.T) archive.Store {
		s := openURL(t, "gs://"+bucket+"/"+t.Name())
		s.pageSize = 100
		return s
	}, storetest.Options{})
}

// TestGCSCredentialErrors: without an emulator the store uses application
// default credentials, and a key file that is not there is a clear error at
// open, naming it; credentials in the URL are refused.
func TestGCSCredentialErrors(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/tidemark-sa.json")
	u, _ := url.Parse("gs://bucket/prefix")
	_, err := Open(context.Background(), u)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/tidemark-sa.json") {
		t.Fatalf("open with a missing key file: %v", err)
	}
	for _, raw := range []string{"gs://user:secret@bucket/p", "gs:///p", "gs://bucket/p?key=x"} {
		u, _ := url.Parse(raw)
		if _, err := Open(context.Background(), u); err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("open %s: %v", raw, err)
		}
	}
}

func TestGCSRetriedCreateFindsItsOwnObject(t *testing.T) {
	lost := &storetest.LostResponses{Match: func(r *http.Request) bool {
		return r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/upload/storage/v1/")
	}}
	storetest.RetriedCreate(t, openFaulty(t, lost), lost)
}

func TestGCSDownloadResumes(t *testing.T) {
	broken := &storetest.BrokenDownloads{After: 100 << 10, Match: func(r *http.Request) bool {
		return r.Method == http.MethodGet && r.URL.Query().Get("alt") == "media"
	}}
	storetest.ResumedDownload(t, openFaulty(t, broken), broken)
}

// openURL opens a store, closed when the test ends, with extra client options.
func openURL(t *testing.T, raw string, extra ...option.ClientOption) *Store {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	s, err := open(context.Background(), u, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openFaulty opens a store on a fresh fake-gcs-server bucket whose HTTP
// requests go through rt.
func openFaulty(t *testing.T, rt http.RoundTripper) *Store {
	t.Helper()
	g := testenv.FakeGCSServer(t)
	g.SetEnv(t)
	return openURL(t, "gs://"+g.NewBucket(t)+"/p", option.WithHTTPClient(&http.Client{Transport: rt}))
}
