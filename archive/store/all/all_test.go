package all

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/storetest"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/storeenv"
)

// TestMain stops the servers (MinIO, fake-gcs-server, Azurite) the
// package's tests started.
func TestMain(m *testing.M) { testenv.Main(m) }

// TestS3RepositoryThroughOpen opens a repository by URL with only the
// standard AWS environment, as the CLI does.
func TestS3RepositoryThroughOpen(t *testing.T) {
	m := storeenv.MinIOServer(t)
	m.SetEnv(t)
	testRepositoryThroughOpen(t, "s3://"+m.NewBucket(t)+"/pg-main")
}

func TestGCSRepositoryThroughOpen(t *testing.T) {
	g := testenv.FakeGCSServer(t)
	g.SetEnv(t)
	testRepositoryThroughOpen(t, "gs://"+g.NewBucket(t)+"/pg-main")
}

func TestAzureRepositoryThroughOpen(t *testing.T) {
	a := storeenv.AzuriteServer(t)
	a.SetEnv(t)
	testRepositoryThroughOpen(t, "azblob://"+a.NewContainer(t)+"/pg-main")
}

// testRepositoryThroughOpen opens a repository by URL with only the
// store's standard environment, as the CLI does, and round-trips an
// encrypted object large enough to be uploaded in parts.
func testRepositoryThroughOpen(t *testing.T, repoURL string) {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, repoURL)
	if err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	r, err := archive.Init(ctx, s, archive.InitOptions{Recipients: []string{id.Recipient().String()}})
	if err != nil {
		t.Fatal(err)
	}
	data := storetest.MixedData(20 << 20) // crosses the multipart threshold once sealed
	if _, err := r.Put(ctx, "blob/big", archive.KindBlob, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Init(ctx, s, archive.InitOptions{NoEncrypt: true}); err == nil {
		t.Fatalf("second init on %s succeeded", repoURL)
	}
	// A write-only handle cannot read; the identity holder reads it back intact.
	if _, err := readBlob(r, "blob/big"); err == nil {
		t.Fatal("read without an identity succeeded")
	}
	s2, err := Open(ctx, repoURL)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := archive.Open(ctx, s2, archive.Keys{Identities: []age.Identity{id}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := readBlob(r2, "blob/big")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, err %v", len(got), err)
	}
}

func readBlob(r *archive.Repository, name string) ([]byte, error) {
	rc, err := r.Get(context.Background(), name, archive.KindBlob)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// TestOpenFile: a plain path and a file:// URL open the same directory; a
// file URL with a host is refused rather than read as a local path.
func TestOpenFile(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "x", strings.NewReader("1"), 1); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"file://" + dir, "file://localhost" + dir} {
		s, err := Open(ctx, u)
		if err != nil {
			t.Fatalf("open %s: %v", u, err)
		}
		if _, err := s.Stat(ctx, "x"); err != nil {
			t.Fatalf("open %s: another directory: %v", u, err)
		}
	}
	if _, err := Open(ctx, "file://server"+dir); !errors.Is(err, archive.ErrBadURL) || !strings.Contains(err.Error(), "take no host") {
		t.Fatalf("file URL with a host: %v", err)
	}
}

// TestOpenBadURLs: a URL that names no store is ErrBadURL (the CLI's usage
// exit code), says what is supported, and shows no secret; a failed open
// returns a nil store.
func TestOpenBadURLs(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ url, want string }{
		{"", "no repository given"},
		{"ftp://user:secret@host/p?token=secret", `unsupported scheme "ftp" (supported: file://, s3://`},
		{"s3://%zz/p", "repository URL"},
		{"s3:///p", "no bucket"},
	} {
		s, err := Open(ctx, c.url)
		if !errors.Is(err, archive.ErrBadURL) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("open %q: %v, want ErrBadURL saying %q", c.url, err, c.want)
		}
		if s != nil {
			t.Errorf("open %q: a failed open returned a store (%T)", c.url, s)
		}
	}
}

// TestS3OutageIsOutlasted: MinIO killed while a repository is in use and
// back a few seconds later: a put of a multipart object, a read, a listing
// and a stat started during the outage all complete once it is back, and
// nothing the outage touched is half there.
func TestS3OutageIsOutlasted(t *testing.T) {
	ctx := context.Background()
	m, err := storeenv.StartMinIO()
	if err != nil {
		testenv.Unavailable(t, "MinIO", err)
	}
	t.Cleanup(m.Stop)
	m.SetEnv(t)
	s, err := Open(ctx, "s3://"+m.NewBucket(t)+"/repo")
	if err != nil {
		t.Fatal(err)
	}
	a := storetest.MixedData(9 << 20)
	if err := s.Put(ctx, "packs/aa/a", bytes.NewReader(a), int64(len(a))); err != nil {
		t.Fatal(err)
	}
	m.Kill()
	back := make(chan error, 1)
	go func() {
		time.Sleep(3 * time.Second)
		back <- m.Restart()
	}()
	b := storetest.MixedData(10 << 20)
	if err := s.Put(ctx, "packs/bb/b", bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("put during the outage: %v", err)
	}
	if err := <-back; err != nil {
		t.Fatalf("restart MinIO: %v", err)
	}
	rc, err := s.Get(ctx, "packs/bb/b", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("object put during the outage: %d bytes, %v", len(got), err)
	}
	m.Kill()
	go func() {
		time.Sleep(2 * time.Second)
		back <- m.Restart()
	}()
	var names []string
	if err := s.List(ctx, "packs/", "", func(o archive.ObjectInfo) error { names = append(names, o.Name); return nil }); err != nil {
		t.Fatalf("list during the outage: %v", err)
	}
	if strings.Join(names, " ") != "packs/aa/a packs/bb/b" {
		t.Fatalf("listing: %v", names)
	}
	if err := <-back; err != nil {
		t.Fatalf("restart MinIO: %v", err)
	}
}
