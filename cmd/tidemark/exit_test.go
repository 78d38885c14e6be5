package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/oplog"
	"github.com/tidemark/tidemark/wal"
)

// TestExitCodesOfEngineErrors: every engine's own sentinel reaches the
// exit code of its class through the one table, however it is wrapped.
func TestExitCodesOfEngineErrors(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{wal.ErrGap, exitGap},
		{binlog.ErrGap, exitGap},
		{binlog.ErrNotCovered, exitGap},
		{oplog.ErrRollover, exitGap},
		{oplog.ErrMissing, exitGap},
		{binlog.ErrOutsideWindow, exitUnreachable},
		{oplog.ErrBeyond, exitUnreachable},
		{binlog.ErrCorrupt, exitCorrupt},
		{archive.ErrKeyFile, exitKey},
		{archive.ErrTargetHoldsData, exitTargetHoldsData},
		{engine.ErrUsage, exitUsage},
	} {
		err := fmt.Errorf("stream: %w", fmt.Errorf("session: %w", c.err))
		if got := exitCode(err); got != c.want {
			t.Errorf("exit code of %v = %d, want %d", c.err, got, c.want)
		}
	}
}

// TestStreamWALGapExits6: after the slot is dropped and the server
// recycles the WAL the archive needed, the next `tidemark stream` stops
// with exit 6 (a gap), like a binlog or oplog gap, not a generic error.
func TestStreamWALGapExits6(t *testing.T) {
	ctx := context.Background()
	pg := testenv.NewPostgreSQL(t, testenv.PostgresOptions{})
	bin := testenv.TidemarkBinary(t)
	repo := filepath.Join(t.TempDir(), "repo")
	expect(t, 0, "init", "--repo", repo, "--no-encryption")
	stream := exec.Command(bin, "stream", "--repo", repo, "--source", pg.URL("postgres"), "--slot", "archiver", "--create-slot",
		"--flush-interval", "100ms")
	if err := stream.Start(); err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	exec1 := func(q string) {
		t.Helper()
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec1("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
	var cur string
	c.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&cur)
	waitUntil(t, "the streamer archived the table", func() bool {
		var ok bool
		c.QueryRow(ctx, "SELECT flush_lsn >= $1::pg_lsn FROM pg_stat_replication WHERE application_name = 'tidemark'", cur).Scan(&ok)
		return ok
	})
	stream.Process.Signal(syscall.SIGTERM)
	if err := stream.Wait(); err != nil {
		t.Fatalf("streamer on SIGTERM: %v", err)
	}
	waitUntil(t, "the slot to go inactive", func() bool {
		var active bool
		c.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = 'archiver'").Scan(&active)
		return !active
	})
	exec1("SELECT pg_drop_replication_slot('archiver')")
	for range 3 {
		exec1("INSERT INTO t SELECT g FROM generate_series(1, 20000) g")
		exec1("SELECT pg_switch_wal()")
		exec1("CHECKPOINT")
	}
	// The real binary, bounded: a streamer that missed the gap would run on.
	tctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	again := exec.CommandContext(tctx, bin, "stream", "--repo", repo, "--source", pg.URL("postgres"), "--slot", "archiver", "--create-slot")
	out, _ := again.CombinedOutput()
	if code := again.ProcessState.ExitCode(); code != exitGap || !strings.Contains(string(out), "gap") {
		t.Fatalf("stream after the WAL it needed was recycled: exit %d\n%s", code, out)
	}
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
