package archive_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/file"
)

// Golden repositories of every released format live in testdata/golden and
// must keep opening. TIDEMARK_WRITE_GOLDEN=1 writes a new set for a new format
// version (never overwrite an existing one).
const (
	goldenManifest = "20261125T000000Z-000000"
)

func goldenContent() []byte {
	var b bytes.Buffer
	for i := 0; i < 300000; i++ {
		b.WriteString("tidemark golden row ")
		b.WriteByte(byte('a' + i%26))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func TestWriteGolden(t *testing.T) {
	if os.Getenv("TIDEMARK_WRITE_GOLDEN") != "1" {
		return // generator, run by hand for a new format version
	}
	ctx := context.Background()
	id, err := age.ParseX25519Identity(readGoldenKey(t))
	if err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]archive.InitOptions{
		"v2-plain": {NoEncrypt: true},
		"v2-age":   {Recipients: []string{id.Recipient().String()}},
	} {
		dir := filepath.Join("testdata", "golden", name)
		s, err := file.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		r, err := archive.Init(ctx, s, o)
		if err != nil {
			t.Fatal(err)
		}
		w, err := r.NewChunkWriter(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		data := goldenContent()
		refs, err := w.WriteFile(ctx, bytes.NewReader(data), archive.ContentDefined)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		m := &archive.Manifest{ID: goldenManifest, Engine: "test", Type: "full", Started: time.Unix(0, 0).UTC(),
			Files: []archive.FileEntry{{Path: "golden.txt", Size: int64(len(data)), Chunks: refs}}}
		if err := r.CommitManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
}

func readGoldenKey(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join("testdata", "golden", "identity.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return string(bytes.TrimSpace(b))
}

func TestGoldenRepositoriesStillOpen(t *testing.T) {
	ctx := context.Background()
	id, err := age.ParseX25519Identity(readGoldenKey(t))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(goldenContent())
	for _, name := range []string{"v1-plain", "v1-age", "v2-plain", "v2-age"} {
		t.Run(name, func(t *testing.T) {
			s, err := file.Open(filepath.Join("testdata", "golden", name))
			if err != nil {
				t.Fatal(err)
			}
			r, err := archive.Open(ctx, s, archive.Keys{Identities: []age.Identity{id}})
			if err != nil {
				t.Fatal(err)
			}
			m, err := r.ReadManifest(ctx, goldenManifest)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := r.RestoreFile(ctx, m.Files[0], &buf, 2); err != nil {
				t.Fatal(err)
			}
			if got := sha256.Sum256(buf.Bytes()); got != sum {
				t.Fatalf("golden file restored with sha256 %s, want %s", hex.EncodeToString(got[:]), hex.EncodeToString(sum[:]))
			}
			rep, err := r.Verify(ctx, nil)
			if err != nil || !rep.OK() {
				t.Fatalf("verify golden: %+v, %v", rep, err)
			}
			if _, err := r.NewChunkWriter(ctx, 1); (err == nil) != (r.Config().Version == archive.ConfigVersion) {
				t.Fatalf("chunk writer on a version %d repository: %v", r.Config().Version, err)
			}
		})
	}
}
