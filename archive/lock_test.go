package archive_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
)

type lockClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *lockClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *lockClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestLockExcludesStealsAndReleases(t *testing.T) {
	ctx := context.Background()
	r, _ := newRepo(t, archive.InitOptions{NoEncrypt: true})
	clock := &lockClock{t: time.Now()}
	// A frozen clock for the first holder: its lease never looks expired to
	// itself, so it keeps renewing until a renewal finds its turn taken.
	frozen := clock.now()
	a, actx, err := r.AcquireLock(ctx, "maintenance", archive.LockOptions{Lease: 300 * time.Millisecond, Purpose: "test A", Now: func() time.Time { return frozen }})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.AcquireLock(ctx, "maintenance", archive.LockOptions{Now: clock.now}); !errors.Is(err, archive.ErrLocked) {
		t.Fatalf("second holder: %v, want ErrLocked", err)
	}
	// Past the lease, as if A's host had died: B takes over, and A learns
	// it lost the lock at its next renewal.
	clock.add(time.Hour)
	b, _, err := r.AcquireLock(ctx, "maintenance", archive.LockOptions{Lease: time.Hour, Now: clock.now})
	if err != nil {
		t.Fatalf("stealing an expired lease: %v", err)
	}
	select {
	case <-actx.Done():
		if !errors.Is(context.Cause(actx), archive.ErrLockLost) {
			t.Fatalf("cause %v", context.Cause(actx))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the holder whose lease was stolen was never told")
	}
	if _, _, err := r.AcquireLock(ctx, "maintenance", archive.LockOptions{Now: clock.now}); !errors.Is(err, archive.ErrLocked) {
		t.Fatalf("while B holds it: %v", err)
	}
	if err := b.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	c, _, err := r.AcquireLock(ctx, "maintenance", archive.LockOptions{Now: clock.now})
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	if err := c.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	_ = a
}

// TestLockOfDeadLocalProcessIsTaken: a holder on this host whose process is
// gone (kill -9) does not block its restarted successor for the rest of
// the lease; a live one does.
func TestLockOfDeadLocalProcessIsTaken(t *testing.T) {
	ctx := context.Background()
	r, _ := newRepo(t, archive.InitOptions{NoEncrypt: true})
	host, _ := os.Hostname()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	put := func(gen int, pid int) {
		t.Helper()
		rec := fmt.Sprintf(`{"holder":"%s/%d/0000","purpose":"crashed streamer","acquired":"2026-01-01T00:00:00Z","expires":"%s"}`,
			host, pid, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
		if _, err := r.Put(ctx, fmt.Sprintf("locks/stream-wal/%016x", gen), archive.KindLock, strings.NewReader(rec)); err != nil {
			t.Fatal(err)
		}
	}
	// A live process (this test's parent, the go tool) holds it: refused.
	put(1, os.Getppid())
	if _, _, err := r.AcquireLock(ctx, "stream-wal", archive.LockOptions{}); !errors.Is(err, archive.ErrLocked) {
		t.Fatalf("lock of a live local process: %v, want ErrLocked", err)
	}
	put(2, dead.Process.Pid)
	l, _, err := r.AcquireLock(ctx, "stream-wal", archive.LockOptions{})
	if err != nil {
		t.Fatalf("lock of a dead local process: %v", err)
	}
	l.Unlock(ctx)
}

// TestCorruptLockIsTakenOverAfterTwoLeases: an unreadable newest lock
// generation (a flipped byte) no longer blocks every backup until someone
// deletes it: it holds like a lease of an unknown holder, named in the
// refusal, for two leases after it was written, and is then taken over.
// Names that are not generations are ignored.
func TestCorruptLockIsTakenOverAfterTwoLeases(t *testing.T) {
	ctx := context.Background()
	r, dir := newRepo(t, archive.InitOptions{NoEncrypt: true})
	s := r.Store()
	l, _, err := r.AcquireLock(ctx, "maintenance", archive.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	var newest string
	s.List(ctx, "locks/maintenance/", "", func(o archive.ObjectInfo) error { newest = o.Name; return nil })
	flipByte(t, dir, newest, 20)
	if err := s.Put(ctx, "locks/maintenance/zz-not-a-generation", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	_, _, err = r.AcquireLock(ctx, "maintenance", archive.LockOptions{})
	if !errors.Is(err, archive.ErrLocked) || !strings.Contains(err.Error(), newest) || !strings.Contains(err.Error(), "unreadable") {
		t.Fatalf("right after the corruption: %v", err)
	}
	later := func() time.Time { return time.Now().Add(2*time.Minute + time.Second) }
	l, _, err = r.AcquireLock(ctx, "maintenance", archive.LockOptions{Now: later})
	if err != nil {
		t.Fatalf("two leases later: %v", err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, newest); !errors.Is(err, archive.ErrNotExist) {
		t.Fatalf("the corrupt generation %s stays: %v", newest, err)
	}
}
