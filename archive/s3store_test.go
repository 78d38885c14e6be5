package archive_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/storetest"
	"github.com/tidemark/tidemark/internal/testenv/storeenv"
)

// TestS3StoreConformance runs the store suite against a real MinIO server,
// under a prefix to prove prefixes are honoured.
func TestS3StoreConformance(t *testing.T) {
	m := storeenv.MinIOServer(t)
	m.SetEnv(t)
	bucket := m.NewBucket(t)
	n := 0
	storetest.Run(t, func(t *testing.T) archive.Store {
		n++
		u, _ := url.Parse("s3://" + bucket + "/repo" + string(rune('a'+n%26)) + "/" + t.Name())
		s, err := archive.OpenS3(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		archive.SetListPageSize(s, 100)
		return s
	}, storetest.Options{})
}

// TestS3RepositoryThroughOpenStore opens a repository by URL with only the
// standard AWS environment, as the CLI does.
func TestS3RepositoryThroughOpenStore(t *testing.T) {
	m := storeenv.MinIOServer(t)
	m.SetEnv(t)
	testRepositoryThroughOpenStore(t, "s3://"+m.NewBucket(t)+"/pg-main")
}
