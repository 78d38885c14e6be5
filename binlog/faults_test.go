package binlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestNoBinaryLogStopsAtOnce: a server without binary logging is a
// misconfiguration retrying cannot fix: the streamer stops at once,
// naming the fix, instead of reconnecting forever with the server's own
// "You are not using binary logging".
func TestNoBinaryLogStopsAtOnce(t *testing.T) {
	db := testenv.NewMariaDB(t, testenv.MariaDBOptions{Args: []string{"--skip-log-bin"}})
	f := newFixture(t, db)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Stream(ctx, f.config())
	if !errors.Is(err, archive.ErrMisconfigured) || !strings.Contains(err.Error(), "set log_bin and binlog_format=ROW") || ctx.Err() != nil {
		t.Fatalf("stream from a server without binary logging: %v", err)
	}
}

// TestLostLeaseWritesNothing: a streamer whose lease is taken over stops
// without its final flush: events it held in memory are not written,
// since another writer owns the stream now (the next streamer reads them
// from the server again).
func TestLostLeaseWritesNothing(t *testing.T) {
	db := testenv.MariaDBServer(t)
	f := newFixture(t, db)
	c := f.conn()
	exec(t, c, "CREATE DATABASE IF NOT EXISTS lease", "CREATE TABLE IF NOT EXISTS lease.t (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT)")
	cfg := f.config()
	cfg.FlushInterval = time.Hour // what arrives stays pending
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		done <- f.repo.WithLock(ctx, "stream-mysql", archive.LockOptions{Lease: 900 * time.Millisecond},
			func(ctx context.Context) error { return Stream(ctx, cfg) })
	}()
	waitFor(t, "the streamer to connect", func() bool { return dumping(t, c) })
	exec(t, c, "INSERT INTO lease.t (v) VALUES (REPEAT('x', 1000))")
	time.Sleep(500 * time.Millisecond) // the event reaches the streamer, and waits there
	before := objectsUnder(t, f.repo, "binlog/")
	var last string
	f.repo.Store().List(ctx, "locks/stream-mysql/", "", func(o archive.ObjectInfo) error { last = o.Name; return nil })
	var gen uint64
	fmt.Sscanf(strings.TrimPrefix(last, "locks/stream-mysql/"), "%x", &gen)
	// Another process takes the stream over (its lease ran out elsewhere).
	next := fmt.Sprintf("locks/stream-mysql/%016x", gen+1)
	rec := fmt.Sprintf(`{"holder":"other/1/x","acquired":"%s","expires":"%s"}`, time.Now().UTC().Format(time.RFC3339), time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	if _, err := f.repo.Put(ctx, next, archive.KindLock, strings.NewReader(rec)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, archive.ErrLockLost) {
			t.Fatalf("streamer whose lease was taken: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the streamer did not notice its lease was lost")
	}
	if after := objectsUnder(t, f.repo, "binlog/"); after != before {
		t.Fatalf("the streamer wrote after its lease was lost:\nbefore %s\nafter  %s", before, after)
	}
}

func objectsUnder(t *testing.T, r *archive.Repository, prefix string) string {
	t.Helper()
	var names []string
	if err := r.Store().List(context.Background(), prefix, "", func(o archive.ObjectInfo) error {
		names = append(names, o.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return strings.Join(names, " ")
}

// dumping reports whether a replica (the streamer) is reading the binlog.
func dumping(t *testing.T, c *client.Conn) bool {
	t.Helper()
	r, err := c.Execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := r.GetInt(0, 0)
	return n > 0
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
