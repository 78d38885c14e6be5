package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/all"
	"github.com/tidemark/tidemark/internal/testenv"
)

// runStreamer starts `tidemark stream` and returns a stop that ends it
// with SIGTERM and fails the test unless it exits 0.
func runStreamer(t *testing.T, logs *testenv.LockedBuffer, args ...string) (stop func()) {
	t.Helper()
	cmd := exec.Command(testenv.TidemarkBinary(t), append([]string{"stream", "--flush-interval", "100ms"}, args...)...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				t.Errorf("streamer: %v\n%s", err, logs)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitStreamer waits (a minute at most) until the repository's heartbeat
// says the streamer streams from slot on server (host:port).
func waitStreamer(t *testing.T, repo, slot, server string, logs *testenv.LockedBuffer) {
	t.Helper()
	ctx := context.Background()
	s, err := all.Open(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	r, err := archive.Open(ctx, s, archive.Keys{})
	if err != nil {
		t.Fatal(err)
	}
	var last *archive.Heartbeat
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		h, err := r.LiveHeartbeat(ctx, "postgres", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if h != nil && h.State == archive.StreamStreaming && h.Slot == slot && h.Server == server {
			return
		}
		last = h
	}
	t.Fatalf("no heartbeat of a streamer on slot %s at %s; last %+v\n%s", slot, server, last, logs)
}

func connect(t *testing.T, pg *testenv.Postgres) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func slots(t *testing.T, c *pgx.Conn) string {
	t.Helper()
	var s string
	if err := c.QueryRow(context.Background(), "SELECT coalesce(string_agg(slot_name, ',' ORDER BY slot_name), '') FROM pg_replication_slots").Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBackupFindsStreamerOnAnySlot: `backup` without --slot finds the
// running streamer (on a slot not named tidemark) by its heartbeat in the
// repository and leaves its WAL to it; with the streamer stopped, the
// backup archives its own range, holding it with a temporary slot. Either
// way the only slot left on the server is the streamer's.
func TestBackupFindsStreamerOnAnySlot(t *testing.T) {
	ctx := context.Background()
	pg := testenv.NewPostgreSQL(t, testenv.PostgresOptions{})
	repo := filepath.Join(t.TempDir(), "repo")
	_, id := keyFile(t)
	expect(t, 0, "init", "--repo", repo, "--recipient", id.Recipient().String())
	var logs testenv.LockedBuffer
	stop := runStreamer(t, &logs, "--repo", repo, "--source", pg.URL("postgres"), "--slot", "archiver", "--create-slot")
	waitStreamer(t, repo, "archiver", fmt.Sprintf("%s:%d", pg.Host, pg.Port), &logs)
	c := connect(t, pg)
	if _, err := c.Exec(ctx, "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g"); err != nil {
		t.Fatal(err)
	}
	out, errs := expect(t, 0, "backup", "--repo", repo, "--source", pg.URL("postgres"), "--fast-checkpoint")
	if !strings.Contains(out, "archived by the running streamer") || !strings.Contains(errs, `slot=archiver`) {
		t.Fatalf("backup beside the streamer:\n%s\n%s", out, errs)
	}
	if s := slots(t, c); s != "archiver" {
		t.Fatalf("slots after the backup: %q, want only the streamer's", s)
	}
	stop()
	if _, err := c.Exec(ctx, "INSERT INTO t SELECT g FROM generate_series(1001, 2000) g"); err != nil {
		t.Fatal(err)
	}
	out, errs = expect(t, 0, "backup", "--repo", repo, "--source", pg.URL("postgres"), "--fast-checkpoint")
	if !strings.Contains(out, "archived by the backup itself") || !strings.Contains(errs, "temporary replication slot") {
		t.Fatalf("backup without a streamer:\n%s\n%s", out, errs)
	}
	if s := slots(t, c); s != "archiver" {
		t.Fatalf("slots after a backup without streamer: %q, want only the streamer's", s)
	}
}

// TestFailoverHA: a primary and its streaming standby (pg_basebackup -R),
// one multi-host source with target_session_attrs=primary listing the
// standby first. The streamer streams from the primary; a backup is taken
// from the standby (its WAL archived by the streamer); the primary is
// killed with -9 and the standby promoted; the streamer follows it,
// creating its slot there, and archives timeline 2 and its history. PITR
// to before the failover, after it and the latest all match.
func TestFailoverHA(t *testing.T) {
	ctx := context.Background()
	conf := []string{"checkpoint_timeout=1h", "max_wal_size=1GB", "wal_keep_size=256MB"}
	primary := testenv.NewPostgreSQL(t, testenv.PostgresOptions{Major: 15, Conf: conf}) // Debian's pg_basebackup is 15
	standby := testenv.NewStandby(t, primary, conf...)
	bin := testenv.TidemarkBinary(t)
	base := t.TempDir()
	repo, key := filepath.Join(base, "repo"), filepath.Join(base, "restore.key")
	keyPath, id := keyFile(t)
	if err := os.Rename(keyPath, key); err != nil {
		t.Fatal(err)
	}
	expect(t, 0, "init", "--repo", repo, "--recipient", id.Recipient().String())
	addr := func(p *testenv.Postgres) string { return fmt.Sprintf("%s:%d", p.Host, p.Port) }
	source := fmt.Sprintf("postgres://postgres@%s,%s/postgres?sslmode=disable&target_session_attrs=primary", addr(standby), addr(primary))

	var logs testenv.LockedBuffer
	stop := runStreamer(t, &logs, "--repo", repo, "--source", source, "--slot", "ha", "--create-slot")
	waitStreamer(t, repo, "ha", addr(primary), &logs)
	pc := connect(t, primary)
	sc := connect(t, standby)
	do := func(c *pgx.Conn, sql string) {
		t.Helper()
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	count := func(c *pgx.Conn) int {
		t.Helper()
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	do(pc, "CREATE TABLE orders (id int primary key, note text)")
	do(pc, "INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 1000) g")
	// A standby's backup begins at the last checkpoint it replayed: one
	// after the streamer started, or the archive could not cover it.
	do(pc, "CHECKPOINT")
	waitReplayed(t, pc, sc)

	// A standby whose replay is paused lags: --max-lag refuses it.
	do(sc, "SELECT pg_wal_replay_pause()")
	do(pc, "INSERT INTO orders VALUES (999999, 'while replay is paused')")
	if _, errs := expect(t, exitError, "backup", "--repo", repo, "--source", source, "--from-standby", "--max-lag", "1ms"); !strings.Contains(errs, "lags too far behind") {
		t.Fatalf("backup from a lagging standby:\n%s", errs)
	}
	do(pc, "DELETE FROM orders WHERE id = 999999")
	do(sc, "SELECT pg_wal_replay_resume()")
	waitReplayed(t, pc, sc)

	out, errs := expect(t, 0, "backup", "--repo", repo, "--source", source, "--from-standby", "--max-lag", "1m", "--fast-checkpoint")
	if !strings.Contains(out, "taken from the standby "+addr(standby)) || !strings.Contains(out, "archived by the running streamer") {
		t.Fatalf("backup from the standby:\n%s\n%s", out, errs)
	}
	if !strings.Contains(errs, "replay_lag=") {
		t.Fatalf("the standby's lag is not reported:\n%s", errs)
	}
	do(pc, "INSERT INTO orders SELECT g, 'phase 2' FROM generate_series(1001, 1500) g")
	time.Sleep(20 * time.Millisecond)
	before := time.Now()
	time.Sleep(20 * time.Millisecond)
	do(pc, "DELETE FROM orders WHERE id > 1200")
	waitWALArchived(t, pc)
	waitReplayed(t, pc, sc)

	primary.Kill() // kill -9
	var promoted bool
	if err := sc.QueryRow(ctx, "SELECT pg_promote(true, 60)").Scan(&promoted); err != nil || !promoted {
		t.Fatalf("promote: %v %v\n%s", promoted, err, standby.Log())
	}
	promotedAt := time.Now()
	do(sc, "INSERT INTO orders SELECT g, 'after failover' FROM generate_series(2001, 2100) g")
	waitStreamer(t, repo, "ha", addr(standby), &logs)
	t.Logf("the streamer streamed from the promoted server %s after the promotion (a measurement, not a limit)", time.Since(promotedAt).Round(time.Millisecond))
	time.Sleep(20 * time.Millisecond)
	after := time.Now()
	time.Sleep(20 * time.Millisecond)
	do(sc, "INSERT INTO orders VALUES (3000, 'latest')")
	waitWALArchived(t, sc)
	stop()
	said := false
	for _, l := range strings.Split(logs.String(), "\n") {
		said = said || strings.Contains(l, "created physical replication slot") && strings.Contains(l, "server="+addr(standby))
	}
	if !said {
		t.Fatalf("the streamer did not say it created its slot on the promoted server:\n%s", logs.String())
	}
	if s := slots(t, sc); s != "ha" {
		t.Fatalf("slots on the promoted server: %q", s)
	}
	st, _ := expect(t, 0, "status", "--repo", repo)
	if !strings.Contains(st, "switch timeline 1 → 2") {
		t.Fatalf("status does not show the timeline switch:\n%s", st)
	}

	restores := filepath.Join(base, "restores")
	os.MkdirAll(restores, 0o755)
	standby.Grant(t, repo, key, restores)
	for i, c := range []struct {
		name   string
		target []string
		want   int
	}{
		{"before the failover", []string{"--to-time", before.UTC().Format(time.RFC3339Nano)}, 1500},
		{"after the failover", []string{"--to-time", after.UTC().Format(time.RFC3339Nano)}, 1300},
		{"latest", []string{"--latest"}, 1301},
	} {
		port, _ := testenv.FreePort()
		dir := filepath.Join(restores, fmt.Sprint(i))
		args := append([]string{"restore", "--repo", repo, "--identity-file", key, "--target-dir", dir, "--start", "--port", fmt.Sprint(port),
			"--pg-bindir", testenv.PostgresBinDir}, c.target...)
		out, err := asServerUser(bin, args...).CombinedOutput()
		defer asServerUser(filepath.Join(testenv.PostgresBinDir, "pg_ctl"), "stop", "-D", dir, "-m", "immediate").Run()
		if err != nil {
			t.Fatalf("restore %s: %v\n%s", c.name, err, out)
		}
		rc, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port))
		if err != nil {
			t.Fatal(err)
		}
		if n := count(rc); n != c.want {
			t.Errorf("restore %s: %d orders, want %d\n%s", c.name, n, c.want, out)
		}
		rc.Close(ctx)
	}
}

// waitReplayed waits (a minute at most) until the standby replayed all
// the primary wrote.
func waitReplayed(t *testing.T, primary, standby *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	var cur string
	if err := primary.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&cur); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		var ok bool
		if err := standby.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", cur).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby did not replay up to %s", cur)
		}
	}
}
