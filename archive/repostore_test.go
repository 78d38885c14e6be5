package archive_test

import (
	"bytes"
	"context"
	"testing"

	"filippo.io/age"

	"github.com/tidemark/tidemark/archive"
)

// testRepositoryThroughOpenStore opens a repository by URL with only the
// store's standard environment, as the CLI does, and round-trips an
// encrypted object large enough to be uploaded in parts.
func testRepositoryThroughOpenStore(t *testing.T, repoURL string) {
	t.Helper()
	ctx := context.Background()
	s, err := archive.OpenStore(ctx, repoURL)
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
		t.Fatalf("second init on %s succeeded", repoURL)
	}
	// A write-only handle cannot read; the identity holder reads it back intact.
	if _, err := readObject(r, "blob/big", archive.KindBlob); err == nil {
		t.Fatal("read without an identity succeeded")
	}
	s2, err := archive.OpenStore(ctx, repoURL)
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
