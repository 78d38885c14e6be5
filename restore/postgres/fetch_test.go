package postgres

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/restore"
)

// TestPlaceFetch: restore_command runs as the restored server's OS user.
// A tidemark and a key file it cannot reach are copied beside the data
// directory, owned by it; a repository it cannot read is a clear error
// before anything is written, and leaves nothing behind.
func TestPlaceFetch(t *testing.T) {
	if os.Geteuid() != 0 {
		return // the server's OS user is the current one: nothing to place (CI runs as root)
	}
	ctx := context.Background()
	p := newPITR(t)
	p.startStreaming()
	p.exec("SELECT pg_switch_wal()")
	p.waitArchived()
	as, err := restore.LookupOSUser("postgres")
	if err != nil {
		t.Fatal(err)
	}
	private := t.TempDir() // 0700, root's: a checkout in root's home
	bin := filepath.Join(private, "bin", "tidemark")
	os.MkdirAll(filepath.Dir(bin), 0o755)
	if err := copyFile(testenv.TidemarkBinary(t), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	restores := filepath.Join(t.TempDir(), "restores")
	os.MkdirAll(restores, 0o755)
	p.pg.Grant(t, restores)
	data := filepath.Join(restores, "pg")
	f := FetchCommand{Binary: bin, Repo: p.repoDir, IdentityFile: p.keyFile}

	// The repository is root's alone: refused, naming the user and why.
	_, _, err = PlaceFetch(ctx, f, data, as)
	if !errors.Is(err, ErrFetchUnreachable) || !strings.Contains(err.Error(), "postgres") || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("unreadable repository: %v", err)
	}
	if _, err := os.Stat(KitDir(data)); !os.IsNotExist(err) {
		t.Fatalf("a refused placement left %s behind", KitDir(data))
	}

	// Readable repository, private binary and key: both are copied.
	p.pg.Grant(t, p.repoDir)
	g, placed, err := PlaceFetch(ctx, f, data, as)
	if err != nil {
		t.Fatal(err)
	}
	kit := KitDir(data)
	if len(placed) != 2 || g.Binary != filepath.Join(kit, "tidemark") || !strings.HasPrefix(g.IdentityFile, kit) ||
		!strings.Contains(g.String(), kit+"/tidemark wal-fetch --repo "+p.repoDir) {
		t.Fatalf("placed %v, command %s", placed, g)
	}
	if fi, err := os.Stat(g.IdentityFile); err != nil || fi.Mode().Perm() != 0o600 || !ownedBy(fi, as) {
		t.Fatalf("key file copy: %v %v", fi, err)
	}
	if err := g.Check(ctx, as); err != nil {
		t.Fatal(err)
	}

	// What the user can already run is used as it is.
	os.RemoveAll(kit)
	p.pg.Grant(t, p.keyFile)
	f.Binary = testenv.TidemarkBinary(t)
	if g, placed, err := PlaceFetch(ctx, f, data, as); err != nil || len(placed) != 0 || g != f {
		t.Fatalf("reachable originals: %v %v %v", g, placed, err)
	}
}

func ownedBy(fi os.FileInfo, as *restore.OSUser) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == as.UID
}
