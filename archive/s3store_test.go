package archive_test

import (
	"bytes"
	"context"
	"net/url"
	"testing"

	"filippo.io/age"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/storetest"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestS3StoreConformance runs the store suite against a real MinIO server,
// under a prefix to prove prefixes are honoured.
func TestS3StoreConformance(t *testing.T) {
	m := testenv.MinIOServer(t)
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
		return s
	}, storetest.Options{LargeSize: 40 << 20})
}

// TestS3RepositoryThroughOpenStore opens a repository by URL with only the
// standard AWS environment, as the CLI does.
func TestS3RepositoryThroughOpenStore(t *testing.T) {
	m := testenv.MinIOServer(t)
	m.SetEnv(t)
	bucket := m.NewBucket(t)
	ctx := context.Background()
	s, err := archive.OpenStore(ctx, "s3://"+bucket+"/pg-main")
	if err != nil {
		t.Fatal(err)
	}
	id := identity(t)
	r, err := archive.Init(ctx, s, archive.InitOptions{Recipients: []string{id.Recipient().String()}})
	if err != nil {
		t.Fatal(err)
	}
	data := mixedData(20 << 20) // crosses the multipart threshold once sealed
	if _, err := r.Put(ctx, "blob/big", archive.KindBlob, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Init(ctx, s, archive.InitOptions{NoEncrypt: true}); err == nil {
		t.Fatal("second init on the same S3 prefix succeeded")
	}
	// A write-only handle cannot read; the identity holder reads it back intact.
	if _, err := readObject(r, "blob/big", archive.KindBlob); err == nil {
		t.Fatal("read without an identity succeeded")
	}
	s2, err := archive.OpenStore(ctx, "s3://"+bucket+"/pg-main")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := archive.Open(ctx, s2, archive.Keys{Identities: []age.Identity{id}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := readObject(r2, "blob/big", archive.KindBlob)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, err %v", len(got), err)
	}
}
