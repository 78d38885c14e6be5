package testenv

import (
	"context"
	"testing"

	"filippo.io/age"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/file"
)

// Repo is an age-encrypted file repository in dir, opened with its key.
type Repo struct {
	*archive.Repository
	Dir      string
	Keys     archive.Keys
	Identity *age.X25519Identity // to write a key file for the CLI or restore_command
}

// NewRepo creates an encrypted repository in a fresh temporary directory,
// as `tidemark init --recipient` would.
func NewRepo(t testing.TB) *Repo {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := archive.Init(ctx, s, archive.InitOptions{Recipients: []string{id.Recipient().String()}}); err != nil {
		t.Fatal(err)
	}
	keys := archive.Keys{Identities: []age.Identity{id}}
	r, err := archive.Open(ctx, s, keys)
	if err != nil {
		t.Fatal(err)
	}
	return &Repo{Repository: r, Dir: dir, Keys: keys, Identity: id}
}
