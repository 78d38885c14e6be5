package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/internal/testenv"
)

// asServerUser runs the real binary as PostgreSQL's OS user when the tests
// run as root (PostgreSQL refuses root), as a DBA would with sudo -u.
func asServerUser(bin string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	}
	return exec.Command(bin, args...)
}

// TestRestoreStartReachesTarget: stream, backup, write, then one command —
// `tidemark restore --start` — brings the server back to a named point,
// promoted, and reports where recovery stopped.
func TestRestoreStartReachesTarget(t *testing.T) {
	ctx := context.Background()
	pg := testenv.NewPostgreSQL(t, testenv.PostgresOptions{})
	bin := testenv.TidemarkBinary(t)
	base := t.TempDir()
	repo, key := filepath.Join(base, "repo"), filepath.Join(base, "restore.key")
	keyPath, id := keyFile(t)
	os.Rename(keyPath, key)
	expect(t, 0, "init", "--repo", repo, "--recipient", id.Recipient().String())

	c := startStreaming(t, bin, pg, repo)
	c.Exec(ctx, "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
	expect(t, 0, "backup", "--repo", repo, "--source", pg.URL("postgres"), "--fast-checkpoint")
	// One writer per stream: a second streamer, even on another slot, is
	// refused by the repository lock before it touches the server.
	if _, errs := expect(t, exitLocked, "stream", "--repo", repo, "--source", pg.URL("postgres"), "--slot", "other", "--create-slot"); !strings.Contains(errs, "tidemark stream (PostgreSQL WAL)") {
		t.Fatalf("second streamer: %s", errs)
	}
	c.Exec(ctx, "INSERT INTO t SELECT g FROM generate_series(1001, 1500) g")
	c.Exec(ctx, "SELECT pg_create_restore_point('good')")
	c.Exec(ctx, "DELETE FROM t")
	waitWALArchived(t, c)

	targetParent := filepath.Join(base, "restores")
	os.MkdirAll(targetParent, 0o755)
	pg.Grant(t, repo, key, targetParent)
	port, _ := testenv.FreePort()
	target := filepath.Join(targetParent, "pg")
	out, err := asServerUser(bin, "restore", "--repo", repo, "--identity-file", key, "--to-name", "good",
		"--target-dir", target, "--start", "--port", fmt.Sprint(port)).CombinedOutput()
	defer asServerUser(filepath.Join(pg.BinDir, "pg_ctl"), "stop", "-D", target, "-m", "immediate").Run()
	if err != nil {
		t.Fatalf("restore --start: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "recovered and promoted") || !strings.Contains(string(out), `recovery stopping at restore point "good"`) {
		t.Fatalf("restore --start output:\n%s", out)
	}
	// The WAL PostgreSQL fetched is counted (the replay's progress).
	if m := regexp.MustCompile(`\((\d+) WAL segments from the repository\)`).FindSubmatch(out); m == nil || string(m[1]) == "0" {
		t.Fatalf("restore --start does not count the WAL segments replayed:\n%s", out)
	}
	// A target the archive never reaches: PostgreSQL ends recovery short of
	// it, and --start says so with exit 7 instead of reporting success.
	missing := filepath.Join(targetParent, "pg2")
	port2, _ := testenv.FreePort()
	cmd := asServerUser(bin, "restore", "--repo", repo, "--identity-file", key, "--to-name", "never-created",
		"--target-dir", missing, "--start", "--port", fmt.Sprint(port2), "--start-timeout", "2m")
	out2, err := cmd.CombinedOutput()
	defer asServerUser(filepath.Join(pg.BinDir, "pg_ctl"), "stop", "-D", missing, "-m", "immediate").Run()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != exitUnreachable || !strings.Contains(string(out2), "before the target") {
		t.Fatalf("restore --start to a point never archived: %v\n%s", err, out2)
	}
	rc, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close(ctx)
	var n int
	if err := rc.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 1500 {
		t.Fatalf("restored rows: %d, %v", n, err)
	}
}

// startStreaming runs `tidemark stream` into repo until the test ends and
// returns a connection to the server.
func startStreaming(t *testing.T, bin string, pg *testenv.Postgres, repo string) *pgx.Conn {
	t.Helper()
	stream := exec.Command(bin, "stream", "--repo", repo, "--source", pg.URL("postgres"), "--create-slot", "--flush-interval", "100ms")
	if err := stream.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stream.Process.Signal(syscall.SIGTERM); stream.Wait() })
	c, err := pgx.Connect(context.Background(), pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// waitWALArchived waits (a minute at most) until the streamer named tidemark
// has made the server's current WAL durable.
func waitWALArchived(t *testing.T, c *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	var cur string
	c.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&cur)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		var ok bool
		c.QueryRow(ctx, "SELECT flush_lsn >= $1::pg_lsn FROM pg_stat_replication WHERE application_name = 'tidemark'", cur).Scan(&ok)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the streamer did not archive up to %s", cur)
		}
	}
}

// TestRestoreRunAsUnknownUser: as root, the restored server's OS user
// (--run-as) must exist; the restore is refused before anything is
// written.
func TestRestoreRunAsUnknownUser(t *testing.T) {
	if os.Geteuid() != 0 {
		return // --run-as is refused without root (CI runs as root)
	}
	target := filepath.Join(t.TempDir(), "never")
	_, errs := expect(t, 2, "restore", "--repo", t.TempDir(), "--latest", "--target-dir", target, "--start", "--run-as", "no-such-user-tm")
	if !strings.Contains(errs, "no-such-user-tm") || !strings.Contains(errs, "--run-as") {
		t.Fatalf("stderr: %s", errs)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatal("refused restore created its target")
	}
}
