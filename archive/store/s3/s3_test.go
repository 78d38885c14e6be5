package s3

import (
	"context"
	"net/url"
	"testing"

	"github.com/tidemark/tidemark/archive"
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
