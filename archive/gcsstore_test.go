package archive_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/storetest"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestGCSStoreConformance runs the store suite against fake-gcs-server,
// under a prefix to prove prefixes are honoured, with small listing pages.
func TestGCSStoreConformance(t *testing.T) {
	g := testenv.FakeGCSServer(t)
	g.SetEnv(t)
	bucket := g.NewBucket(t)
	storetest.Run(t, func(t *testing.T) archive.Store {
		u, _ := url.Parse("gs://" + bucket + "/" + t.Name())
		s, err := archive.OpenGCS(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		archive.SetListPageSize(s, 100)
		return s
	}, storetest.Options{})
}

func TestGCSRepositoryThroughOpenStore(t *testing.T) {
	g := testenv.FakeGCSServer(t)
	g.SetEnv(t)
	testRepositoryThroughOpenStore(t, "gs://"+g.NewBucket(t)+"/pg-main")
}

// TestGCSCredentialErrors: without an emulator the store uses application
// default credentials, and a key file that is not there is a clear error at
// open, naming it; credentials in the URL are refused.
func TestGCSCredentialErrors(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/tidemark-sa.json")
	_, err := archive.OpenStore(context.Background(), "gs://bucket/prefix")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/tidemark-sa.json") {
		t.Fatalf("open with a missing key file: %v", err)
	}
	for _, u := range []string{"gs://user:secret@bucket/p", "gs:///p", "gs://bucket/p?key=x"} {
		if _, err := archive.OpenStore(context.Background(), u); err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("open %s: %v", u, err)
		}
	}
}
