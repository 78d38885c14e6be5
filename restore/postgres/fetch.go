package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tidemark/tidemark/internal/shell"
	"github.com/tidemark/tidemark/restore"
)

// FetchCommand is how a restored server fetches WAL: its restore_command
// runs the tidemark executable as the server's OS user, with its own
// environment, naming the repository and the key files by path (a key is
// never written inline).
type FetchCommand struct {
	Binary         string // the tidemark executable
	Repo           string // repository URL; a local path is made absolute
	IdentityFile   string
	PassphraseFile string
}

// keyFiles are the command's key files by flag.
func (f *FetchCommand) keyFiles() []struct {
	flag string
	path *string
} {
	return []struct {
		flag string
		path *string
	}{{"--identity-file", &f.IdentityFile}, {"--passphrase-file", &f.PassphraseFile}}
}

func (f FetchCommand) args() []string {
	args := []string{"wal-fetch", "--repo", f.Repo}
	for _, kf := range f.keyFiles() {
		if *kf.path != "" {
			args = append(args, kf.flag, *kf.path)
		}
	}
	return args
}

// String is the restore_command line.
func (f FetchCommand) String() string {
	words := []string{shell.Quote(f.Binary)}
	for _, a := range f.args() {
		words = append(words, shell.Quote(a))
	}
	return strings.Join(append(words, "%f", "%p"), " ")
}

// Absolute makes the repository path and the key files absolute: the
// server runs restore_command in its data directory.
func (f FetchCommand) Absolute() (FetchCommand, error) {
	var err error
	if !strings.Contains(f.Repo, "://") {
		if f.Repo, err = filepath.Abs(f.Repo); err != nil {
			return f, err
		}
	}
	for _, kf := range f.keyFiles() {
		if *kf.path != "" {
			if *kf.path, err = filepath.Abs(*kf.path); err != nil {
				return f, err
			}
		}
	}
	return f, nil
}

// Check runs `tidemark wal-fetch --check` as the server's OS user (nil:
// the current user), as restore_command would run: the executable must
// start, the repository open with the key files and its WAL be readable.
// TIDEMARK_* variables are left out: the server does not have ours.
func (f FetchCommand) Check(ctx context.Context, as *restore.OSUser) error {
	cmd := as.Command(ctx, f.Binary, append(f.args(), "--check")...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TIDEMARK_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "tidemark: "))
		if msg == "" {
			msg = err.Error()
		}
		return errors.New(msg)
	}
	return nil
}

// KitDir is where a restore places tidemark and the key files for the
// restored server when the originals are out of its OS user's reach:
// beside the data directory, named after it, so it lives as long as the
// data directory does and is not copied by backups of the restored
// cluster.
func KitDir(dataDir string) string { return filepath.Clean(dataDir) + ".tidemark" }

// ErrFetchUnreachable: the restored server's OS user cannot run
// restore_command, so recovery would stop at the first WAL file.
var ErrFetchUnreachable = errors.New("restore_command cannot run as the restored server's OS user")

// PlaceFetch returns a restore_command the server's OS user can run: f
// itself when it already can, else one whose executable and key files are
// copies in KitDir(dataDir), owned by that user. placed names the copies.
// When even that fails — the repository itself is out of reach — the error
// says what the user cannot read.
func PlaceFetch(ctx context.Context, f FetchCommand, dataDir string, as *restore.OSUser) (FetchCommand, []string, error) {
	first := f.Check(ctx, as)
	if first == nil {
		return f, nil, nil
	}
	kit := KitDir(dataDir)
	placed, g, err := copyKit(f, kit, as)
	if err != nil {
		return f, nil, fmt.Errorf("place tidemark for restore_command in %s: %w", kit, err)
	}
	if err := g.Check(ctx, as); err != nil {
		os.RemoveAll(kit)
		return f, nil, fmt.Errorf("%w: %s (as %s: %v; with tidemark and the key file copied to %s: %v): the repository must be readable by that user",
			ErrFetchUnreachable, userName(as), f.Binary, first, kit, err)
	}
	return g, placed, nil
}

// copyKit copies the executable and the key files into kit, for as.
func copyKit(f FetchCommand, kit string, as *restore.OSUser) ([]string, FetchCommand, error) {
	if err := os.MkdirAll(kit, 0o700); err != nil {
		return nil, f, err
	}
	g := f
	g.Binary = filepath.Join(kit, "tidemark")
	if err := copyFile(f.Binary, g.Binary, 0o700); err != nil {
		return nil, f, err
	}
	placed := []string{g.Binary}
	for _, kf := range g.keyFiles() {
		if *kf.path == "" {
			continue
		}
		dst := filepath.Join(kit, strings.TrimPrefix(kf.flag, "--"))
		if err := copyFile(*kf.path, dst, 0o600); err != nil {
			return nil, f, err
		}
		*kf.path = dst
		placed = append(placed, dst)
	}
	return placed, g, as.Chown(kit)
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

func userName(as *restore.OSUser) string {
	if as == nil {
		return "the current user"
	}
	return "OS user " + as.Name
}
