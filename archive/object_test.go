package archive_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/file"
	"github.com/tidemark/tidemark/archive/store/storetest"
)

// newRepo creates a repository in a fresh file store.
func newRepo(t *testing.T, o archive.InitOptions) (*archive.Repository, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := archive.Init(context.Background(), s, o)
	if err != nil {
		t.Fatal(err)
	}
	return r, dir
}

func reopen(t *testing.T, dir string, keys archive.Keys) (*archive.Repository, error) {
	t.Helper()
	s, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return archive.Open(context.Background(), s, keys)
}

func identity(t *testing.T) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func readObject(r *archive.Repository, name string, kind archive.Kind) ([]byte, error) {
	rc, err := r.Get(context.Background(), name, kind)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestObjectRoundTrip(t *testing.T) {
	id := identity(t)
	modes := map[string]archive.InitOptions{
		"plain":      {NoEncrypt: true},
		"plain-raw":  {NoEncrypt: true, Compression: "none"},
		"recipients": {Recipients: []string{id.Recipient().String()}},
		"passphrase": {Passphrase: []byte("correct horse battery staple")},
	}
	for name, o := range modes {
		t.Run(name, func(t *testing.T) {
			_, dir := newRepo(t, o)
			r, err := reopen(t, dir, archive.Keys{Identities: []age.Identity{id}, Passphrase: o.Passphrase})
			if err != nil {
				t.Fatal(err)
			}
			for _, size := range []int{0, 1, 1000, 256 << 10, 3<<20 + 17} {
				data := storetest.MixedData(size)
				objName := "blob/" + strings.Repeat("x", 1+size%7)
				objName += "-" + string(rune('a'+size%26))
				st, err := r.Put(context.Background(), objName+"-"+name, archive.KindBlob, bytes.NewReader(data))
				if err != nil {
					t.Fatal(err)
				}
				if st.Plain != int64(size) {
					t.Fatalf("plain = %d, want %d", st.Plain, size)
				}
				got, err := readObject(r, objName+"-"+name, archive.KindBlob)
				if err != nil {
					t.Fatalf("size %d: %v", size, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("size %d: round trip differs", size)
				}
			}
		})
	}
}

// TestEncryptedRepositoryHoldsNoPlaintext writes recognisable data and scans
// every stored byte for it.
func TestEncryptedRepositoryHoldsNoPlaintext(t *testing.T) {
	id := identity(t)
	r, dir := newRepo(t, archive.InitOptions{Recipients: []string{id.Recipient().String()}, Compression: "none"})
	secret := bytes.Repeat([]byte("SECRET-ROW-"), 10000)
	if _, err := r.Put(context.Background(), "blob/s", archive.KindBlob, bytes.NewReader(secret)); err != nil {
		t.Fatal(err)
	}
	w, err := r.NewChunkWriter(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteFile(context.Background(), bytes.NewReader(secret), archive.ContentDefined); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("SECRET-ROW")) {
			t.Errorf("%s contains plaintext", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestEveryFlippedByteDetected flips each byte of a stored object in turn.
func TestEveryFlippedByteDetected(t *testing.T) {
	id := identity(t)
	for _, o := range []archive.InitOptions{{NoEncrypt: true}, {NoEncrypt: true, Compression: "none"}, {Recipients: []string{id.Recipient().String()}}} {
		r, dir := newRepo(t, o)
		r, err := reopen(t, dir, archive.Keys{Identities: []age.Identity{id}})
		if err != nil {
			t.Fatal(err)
		}
		data := storetest.MixedData(3000)
		if _, err := r.Put(context.Background(), "blob/target", archive.KindBlob, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "blob", "target")
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := range orig {
			for _, mask := range []byte{0x01, 0x80} {
				bad := bytes.Clone(orig)
				bad[i] ^= mask
				if err := os.WriteFile(path, bad, 0o600); err != nil {
					t.Fatal(err)
				}
				got, err := readObject(r, "blob/target", archive.KindBlob)
				if err == nil {
					t.Fatalf("%s: flip of byte %d/%d (mask %#x) undetected (read %d bytes, equal=%v)", o.Compression, i, len(orig), mask, len(got), bytes.Equal(got, data))
				}
				if !strings.Contains(err.Error(), "blob/target") {
					t.Fatalf("error does not name the object: %v", err)
				}
			}
		}
		// Truncations at every length are detected too.
		for n := 0; n < len(orig); n++ {
			if err := os.WriteFile(path, orig[:n], 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := readObject(r, "blob/target", archive.KindBlob); err == nil {
				t.Fatalf("truncation to %d/%d bytes undetected", n, len(orig))
			} else if !errors.Is(err, archive.ErrCorrupt) {
				t.Fatalf("truncation to %d: error %v is not ErrCorrupt", n, err)
			}
		}
		// Appended garbage is detected.
		if err := os.WriteFile(path, append(bytes.Clone(orig), 0), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := readObject(r, "blob/target", archive.KindBlob); err == nil {
			t.Fatalf("trailing byte undetected")
		}
	}
}

func TestWrongAndMissingIdentity(t *testing.T) {
	owner, stranger := identity(t), identity(t)
	_, dir := newRepo(t, archive.InitOptions{Recipients: []string{owner.Recipient().String()}})

	// A write-only host (no identity) can write but not read.
	w, err := reopen(t, dir, archive.Keys{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Put(context.Background(), "blob/x", archive.KindBlob, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := readObject(w, "blob/x", archive.KindBlob); !errors.Is(err, archive.ErrNoIdentity) {
		t.Fatalf("read without identity: %v, want ErrNoIdentity", err)
	}
	// A wrong identity is refused at open, with the recipients named.
	_, err = reopen(t, dir, archive.Keys{Identities: []age.Identity{stranger}})
	if !errors.Is(err, archive.ErrWrongIdentity) || !strings.Contains(err.Error(), owner.Recipient().String()) {
		t.Fatalf("open with wrong identity: %v", err)
	}
	// Wrong passphrase likewise.
	_, pdir := newRepo(t, archive.InitOptions{Passphrase: []byte("right")})
	if _, err := reopen(t, pdir, archive.Keys{Passphrase: []byte("wrong")}); !errors.Is(err, archive.ErrWrongIdentity) {
		t.Fatalf("open with wrong passphrase: %v", err)
	}
}

func TestPlaintextObjectRefusedInEncryptedRepository(t *testing.T) {
	id := identity(t)
	_, dir := newRepo(t, archive.InitOptions{Recipients: []string{id.Recipient().String()}})
	// Forge an unencrypted object with an unencrypted repository's codec.
	plain, _ := newRepo(t, archive.InitOptions{NoEncrypt: true})
	if _, err := plain.Put(context.Background(), "blob/forged", archive.KindBlob, strings.NewReader("evil")); err != nil {
		t.Fatal(err)
	}
	forged, err := os.ReadFile(filepath.Join(plainDir(t, plain), "blob", "forged"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "blob"), 0o700)
	if err := os.WriteFile(filepath.Join(dir, "blob", "forged"), forged, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := reopen(t, dir, archive.Keys{Identities: []age.Identity{id}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readObject(r, "blob/forged", archive.KindBlob); !errors.Is(err, archive.ErrCorrupt) {
		t.Fatalf("plaintext object accepted: %v", err)
	}
}

func plainDir(t *testing.T, r *archive.Repository) string {
	loc := r.Store().Location()
	return strings.TrimPrefix(loc, "file://")
}

func TestKindMismatchRefused(t *testing.T) {
	r, _ := newRepo(t, archive.InitOptions{NoEncrypt: true})
	if _, err := r.Put(context.Background(), "blob/k", archive.KindBlob, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := readObject(r, "blob/k", archive.KindManifest); !errors.Is(err, archive.ErrCorrupt) {
		t.Fatalf("blob read as manifest: %v", err)
	}
}

func TestInitRefusesNonEmpty(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "something"), []byte("x"), 0o600)
	s, _ := file.Open(dir)
	_, err := archive.Init(context.Background(), s, archive.InitOptions{NoEncrypt: true})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("init on non-empty location: %v", err)
	}
	// And a second init on an initialised repository is refused too.
	_, dir2 := newRepo(t, archive.InitOptions{NoEncrypt: true})
	s2, _ := file.Open(dir2)
	if _, err := archive.Init(context.Background(), s2, archive.InitOptions{NoEncrypt: true}); err == nil {
		t.Fatal("second init succeeded")
	}
	// Encryption must be chosen explicitly.
	s3, _ := file.Open(t.TempDir())
	if _, err := archive.Init(context.Background(), s3, archive.InitOptions{}); err == nil {
		t.Fatal("init without an encryption choice succeeded")
	}
}

func TestConfigHoldsNoSecrets(t *testing.T) {
	pass := []byte("hunter2-passphrase")
	_, dir := newRepo(t, archive.InitOptions{Passphrase: pass})
	cfg, err := os.ReadFile(filepath.Join(dir, "config"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(cfg, pass) || bytes.Contains(cfg, []byte("AGE-SECRET-KEY")) {
		t.Fatal("config holds a secret")
	}
	key, err := os.ReadFile(filepath.Join(dir, "keys", "passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(key, []byte("AGE-SECRET-KEY")) || bytes.Contains(key, pass) {
		t.Fatal("wrapped key stored in the clear")
	}
}
