package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/file"
	"github.com/tidemark/tidemark/internal/jobs"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/storeenv"
)

func TestMain(m *testing.M) {
	// A PostgreSQL restore run in-process writes this test binary into
	// restore_command (os.Executable) and checks it as the server's OS
	// user: it then acts as the CLI, never as the test suite.
	if len(os.Args) > 1 && os.Args[1] == "wal-fetch" {
		main()
	}
	// As a user runs tidemark: the servers' major's binaries on PATH, which
	// restore --start and drill find their binaries by.
	if bin, err := testenv.PostgresBin(testenv.DefaultPostgresMajor()); err == nil {
		os.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	testenv.Main(m)
}

// run executes the CLI in-process and returns its output and exit code.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	a := newApp(&out, &errb)
	root := a.root()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.ExecuteContext(context.Background())
	printError(&errb, err)
	return out.String(), errb.String(), exitCode(err)
}

func expect(t *testing.T, wantCode int, args ...string) (string, string) {
	t.Helper()
	out, errs, code := run(t, args...)
	if code != wantCode {
		t.Fatalf("tidemark %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, out, errs)
	}
	return out, errs
}

func keyFile(t *testing.T) (string, *age.X25519Identity) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, id
}

func TestInitAndStatus(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	expect(t, 0, "init", "--repo", repo, "--no-encryption")
	out, _ := expect(t, 0, "status", "--repo", repo, "--json")
	var st jobs.StatusReport
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if st.Encryption != archive.EncryptionNone || st.Total.Objects != 1 {
		t.Fatalf("status = %+v", st)
	}
	// A second init on the same location is refused.
	_, errs := expect(t, 1, "init", "--repo", repo, "--no-encryption")
	if !strings.Contains(errs, "not empty") {
		t.Fatalf("second init: %s", errs)
	}
}

func TestInitRequiresOneEncryptionChoice(t *testing.T) {
	repo := t.TempDir()
	expect(t, 2, "init", "--repo", repo)
	pass := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(pass, []byte("secret\n"), 0o600)
	expect(t, 2, "init", "--repo", repo, "--no-encryption", "--passphrase-file", pass)
	expect(t, 2, "init", "--repo", repo, "--recipient", "not-a-key")
	expect(t, 2, "init", "--repo", "gopher://x/y", "--no-encryption")
	expect(t, 2, "status")
}

func TestEnvironmentFillsFlags(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	_, id := keyFile(t)
	t.Setenv("TIDEMARK_REPO", repo)
	t.Setenv("TIDEMARK_RECIPIENT", id.Recipient().String())
	expect(t, 0, "init")
	out, _ := expect(t, 0, "status", "--json")
	var st jobs.StatusReport
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Recipients) != 1 || st.Recipients[0] != id.Recipient().String() {
		t.Fatalf("recipients from TIDEMARK_RECIPIENT: %v", st.Recipients)
	}
}

func TestVerifyKeysAndCorruption(t *testing.T) {
	ctx := context.Background()
	repo := filepath.Join(t.TempDir(), "repo")
	key, id := keyFile(t)
	wrong, _ := keyFile(t)
	expect(t, 0, "init", "--repo", repo, "--recipient", id.Recipient().String())

	// Put some data in as a backup host would (public key only).
	s, _ := file.Open(repo)
	r, err := archive.Open(ctx, s, archive.Keys{})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := r.NewChunkWriter(ctx, 2)
	data := bytes.Repeat([]byte("row of data "), 500000)
	refs, err := w.WriteFile(ctx, bytes.NewReader(data), archive.ContentDefined)
	if err != nil {
		t.Fatal(err)
	}
	w.Commit(ctx)
	if err := r.CommitManifest(ctx, &archive.Manifest{ID: "20260101T000000Z-aaaaaa", Engine: "test",
		Files: []archive.FileEntry{{Path: "f", Size: int64(len(data)), Chunks: refs}}}); err != nil {
		t.Fatal(err)
	}

	_, errs := expect(t, 4, "verify", "--repo", repo)
	if !strings.Contains(errs, "identity") {
		t.Fatalf("verify without key: %s", errs)
	}
	_, errs = expect(t, 4, "verify", "--repo", repo, "--identity-file", wrong)
	if !strings.Contains(errs, "wrong key") {
		t.Fatalf("verify with wrong key: %s", errs)
	}
	out, _ := expect(t, 0, "verify", "--repo", repo, "--identity-file", key)
	if !strings.Contains(out, "1 backups") {
		t.Fatalf("verify: %s", out)
	}

	// Flip a byte in the middle of the chunk: verify names it, exits 3.
	h := refs[0].ID.String()
	pack, off, n, err := r.ChunkLocation(ctx, refs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	chunk := filepath.Join(repo, filepath.FromSlash(pack))
	b, err := os.ReadFile(chunk)
	if err != nil {
		t.Fatal(err)
	}
	b[off+n/2] ^= 1
	if err := os.WriteFile(chunk, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ = expect(t, 3, "verify", "--repo", repo, "--identity-file", key, "--json")
	var rep archive.VerifyReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("verify --json: %v: %s", err, out)
	}
	if rep.OK() || !strings.Contains(strings.Join(rep.Problems, "\n"), h) {
		t.Fatalf("problems do not name the chunk %s: %v", h, rep.Problems)
	}
}

func TestPasswordsRefusedOnCommandLine(t *testing.T) {
	repo := t.TempDir()
	_, errs := expect(t, 2, "stream", "--repo", repo, "--source", "postgres://u:hunter2@db/x")
	if !strings.Contains(errs, "passwords do not belong") || strings.Contains(errs, "hunter2") {
		t.Fatalf("password refusal: %s", errs)
	}
	// From the environment it is allowed: validation passes and the command
	// goes on to open the (here missing) repository.
	t.Setenv("TIDEMARK_SOURCE", "postgres://u:hunter2@db/x")
	_, errs = expect(t, 5, "stream", "--repo", repo)
	if strings.Contains(errs, "hunter2") {
		t.Fatalf("password printed: %s", errs)
	}
}

func TestRestoreArgumentValidation(t *testing.T) {
	repo := t.TempDir()
	expect(t, 2, "restore", "--repo", repo, "--target-dir", "x")
	expect(t, 2, "restore", "--repo", repo, "--latest", "--to-time", "2026-01-01T00:00:00Z", "--target-dir", "x")
	expect(t, 2, "restore", "--repo", repo, "--to-time", "2026-01-01 00:00:00", "--target-dir", "x") // no zone
	expect(t, 2, "restore", "--repo", repo, "--latest")
	expect(t, 2, "restore", "--repo", repo, "--latest", "--target", "redis://x")
	expect(t, 5, "restore", "--repo", repo, "--to-time", "2026-01-01 00:00:00.5+00", "--target-dir", "x") // no repository there
	expect(t, 2, "backup", "--repo", repo, "--source", "postgres://db/x", "--type", "weekly")
	expect(t, 2, "stream", "--repo", repo, "--source", "oracle://db")
	expect(t, 2, "agent")
}

// TestS3RepositoryFromCLI drives init and status against real MinIO through
// the standard AWS environment.
func TestS3RepositoryFromCLI(t *testing.T) {
	m := storeenv.MinIOServer(t)
	m.SetEnv(t)
	bucket := m.NewBucket(t)
	repo := "s3://" + bucket + "/pg-main"
	_, id := keyFile(t)
	expect(t, 0, "init", "--repo", repo, "--recipient", id.Recipient().String())
	out, _ := expect(t, 0, "status", "--repo", repo, "--json")
	if !strings.Contains(out, `"encryption": "age-x25519"`) {
		t.Fatalf("status: %s", out)
	}
	expect(t, 1, "init", "--repo", repo, "--no-encryption")
}

// TestObjectStoreRepositoriesFromCLI drives init and status against
// fake-gcs-server and Azurite through each store's standard environment, and
// refuses a key in the URL as bad usage.
func TestObjectStoreRepositoriesFromCLI(t *testing.T) {
	_, id := keyFile(t)
	for name, repo := range map[string]func(t *testing.T) string{
		"gs": func(t *testing.T) string {
			g := testenv.FakeGCSServer(t)
			g.SetEnv(t)
			return "gs://" + g.NewBucket(t) + "/pg-main"
		},
		"azblob": func(t *testing.T) string {
			a := storeenv.AzuriteServer(t)
			a.SetEnv(t)
			return "azblob://" + a.NewContainer(t) + "/pg-main"
		},
	} {
		t.Run(name, func(t *testing.T) {
			repo := repo(t)
			expect(t, 0, "init", "--repo", repo, "--recipient", id.Recipient().String())
			if out, _ := expect(t, 0, "status", "--repo", repo, "--json"); !strings.Contains(out, `"encryption": "age-x25519"`) {
				t.Fatalf("status: %s", out)
			}
			expect(t, 1, "init", "--repo", repo, "--no-encryption")
			if _, errs := expect(t, 2, "status", "--repo", repo+"?sig=topsecret"); strings.Contains(errs, "topsecret") {
				t.Fatalf("secret echoed: %s", errs)
			}
		})
	}
}

// TestWalFetchExitCodes: a missing file is exit 1 and quiet; a file that
// exists but cannot be served is 126, which makes PostgreSQL abort recovery
// rather than promote early with WAL missing.
func TestWalFetchExitCodes(t *testing.T) {
	ctx := context.Background()
	repo := filepath.Join(t.TempDir(), "repo")
	key, id := keyFile(t)
	expect(t, 0, "init", "--repo", repo, "--recipient", id.Recipient().String())
	s, _ := file.Open(repo)
	r, err := archive.Open(ctx, s, archive.Keys{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.BindSource(ctx, archive.Source{Engine: "postgres", ClusterID: "1", Details: map[string]string{"wal_segment_size": "16777216"}}); err != nil {
		t.Fatal(err)
	}
	seg := bytes.Repeat([]byte{7}, 16<<20)
	if _, err := r.Put(ctx, "wal/00000001/000000010000000000000003", archive.KindSegment, bytes.NewReader(seg)); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	expect(t, 0, "wal-fetch", "--repo", repo, "--identity-file", key, "000000010000000000000003", dest)
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, seg) {
		t.Fatal("fetched segment differs")
	}
	_, errs := expect(t, 1, "wal-fetch", "--repo", repo, "--identity-file", key, "000000010000000000000004", dest)
	if errs != "" {
		t.Fatalf("missing file is not quiet: %q", errs)
	}
	expect(t, 1, "wal-fetch", "--repo", repo, "--identity-file", key, "00000002.history", dest)
	// Corrupt the segment: 126, loudly, never 1.
	path := filepath.Join(repo, "wal", "00000001", "000000010000000000000003")
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 1
	os.WriteFile(path, b, 0o600)
	_, errs = expect(t, 126, "wal-fetch", "--repo", repo, "--identity-file", key, "000000010000000000000003", dest)
	if !strings.Contains(errs, "corrupt") {
		t.Fatalf("stderr: %s", errs)
	}
	// A wrong key is 126 as well: recovery must not go on without the WAL.
	wrong, _ := keyFile(t)
	expect(t, 126, "wal-fetch", "--repo", repo, "--identity-file", wrong, "000000010000000000000003", dest)
}

// TestEveryResultHasJSON: every command that ends with a result offers it
// as JSON; the exceptions run until stopped or print a file of their own
// format.
func TestEveryResultHasJSON(t *testing.T) {
	noResult := map[string]string{"stream": "runs until stopped", "agent": "runs until stopped",
		"install": "prints a unit file or crontab line", "wal-fetch": "restore_command's protocol: an exit code"}
	var walk func(c *cobra.Command)
	seen := 0
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			seen++
			if why, ok := noResult[sub.Name()]; ok {
				t.Logf("%s: no --json (%s)", sub.CommandPath(), why)
				continue
			}
			if sub.Flags().Lookup("json") == nil {
				t.Errorf("%s has a result but no --json", sub.CommandPath())
			}
		}
	}
	walk(newApp(io.Discard, io.Discard).root())
	if seen < 10 {
		t.Fatalf("only %d commands found", seen)
	}
}
