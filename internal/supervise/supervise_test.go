package supervise_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/internal/supervise"
	"github.com/tidemark/tidemark/oplog"
	"github.com/tidemark/tidemark/wal"
)

// harness runs Run with a fake clock and records what the loop did.
type harness struct {
	opts   supervise.Options
	log    bytes.Buffer
	sleeps []time.Duration
	stops  []error // what Stop was called with
	gaps   int
}

func newHarness() *harness {
	h := &harness{}
	h.opts = supervise.Options{
		Stream: "WAL", Source: "postgres://u@db1:5432/postgres",
		Log:     slog.New(slog.NewTextHandler(&h.log, nil)),
		Initial: time.Second, Max: 4 * time.Second,
		Sleep: func(ctx context.Context, d time.Duration) error {
			h.sleeps = append(h.sleeps, d)
			return ctx.Err()
		},
		Stop: func(err error) error {
			h.stops = append(h.stops, err)
			return err
		},
	}
	return h
}

// script returns a session that answers with results in turn, then ErrDone.
type result struct {
	progressed bool
	err        error
}

func script(calls *int, results ...result) func(context.Context) (bool, error) {
	return func(context.Context) (bool, error) {
		*calls++
		if *calls > len(results) {
			return false, supervise.ErrDone
		}
		r := results[*calls-1]
		return r.progressed, r.err
	}
}

var errTransient = errors.New("connection reset by peer")

func TestBackoffGrowsAndResetsAfterProgress(t *testing.T) {
	h := newHarness()
	fail, progress := result{err: errTransient}, result{progressed: true, err: errTransient}
	var calls int
	err := supervise.Run(context.Background(), h.opts, script(&calls, fail, fail, fail, fail, progress, fail))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Doubling up to Max, back to Initial after the session that progressed.
	want := []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 1 * time.Second, 2 * time.Second}
	if !slices.Equal(h.sleeps, want) {
		t.Fatalf("backoffs %v, want %v", h.sleeps, want)
	}
	if calls != 7 || len(h.stops) != 1 || h.stops[0] != nil {
		t.Fatalf("sessions %d, stops %v: want 7 sessions and one clean stop", calls, h.stops)
	}
	// Each reconnect is logged naming the stream, the database and the error.
	lines := strings.Split(strings.TrimSpace(h.log.String()), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d log lines, want one per reconnect:\n%s", len(lines), h.log.String())
	}
	for _, l := range lines {
		for _, w := range []string{"level=ERROR", `msg="WAL streaming interrupted; reconnecting"`,
			"source=postgres://u@db1:5432/postgres", `err="connection reset by peer"`, "retry_in="} {
			if !strings.Contains(l, w) {
				t.Fatalf("log line %q lacks %q", l, w)
			}
		}
	}
}

func TestDefaults(t *testing.T) {
	var sleeps []time.Duration
	var calls int
	fail := result{err: errTransient}
	results := make([]result, 7)
	for i := range results {
		results[i] = fail
	}
	err := supervise.Run(context.Background(), supervise.Options{Stream: "binlog",
		Log: slog.New(slog.DiscardHandler),
		Sleep: func(_ context.Context, d time.Duration) error {
			sleeps = append(sleeps, d)
			return nil
		}}, script(&calls, results...))
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	if !slices.Equal(sleeps, want) {
		t.Fatalf("default backoffs %v, want %v", sleeps, want)
	}
}

// TestPermanentStops: every class that ends streaming ends it at once,
// through Stop, with the error itself.
func TestPermanentStops(t *testing.T) {
	for _, class := range []error{archive.ErrMisconfigured, archive.ErrSourceMismatch, archive.ErrCorrupt,
		archive.ErrUnsupported, archive.ErrExist, archive.ErrLockLost} {
		t.Run(class.Error(), func(t *testing.T) {
			h := newHarness()
			h.opts.OnGap = func(error) error { h.gaps++; return nil }
			var calls int
			sessionErr := fmt.Errorf("open stream: %w", class)
			err := supervise.Run(context.Background(), h.opts, script(&calls, result{err: sessionErr}))
			if !errors.Is(err, class) || calls != 1 || len(h.sleeps) != 0 || h.gaps != 0 {
				t.Fatalf("Run = %v after %d sessions, %d sleeps, %d gaps: want the error after one session", err, calls, len(h.sleeps), h.gaps)
			}
			if class == archive.ErrLockLost {
				if len(h.stops) != 0 {
					t.Fatalf("Stop (the final flush) called after the lease was lost: %v", h.stops)
				}
			} else if len(h.stops) != 1 || h.stops[0] != sessionErr {
				t.Fatalf("Stop called with %v, want once with the session's error", h.stops)
			}
			if h.log.Len() != 0 {
				t.Fatalf("a permanent error logged as a reconnect:\n%s", h.log.String())
			}
		})
	}
}

// TestEnginePermanentErrors: every error a streamer stopped on before the
// loop was shared still stops it, and a lost lease now stops all three.
func TestEnginePermanentErrors(t *testing.T) {
	for _, err := range []error{
		wal.ErrGap, wal.ErrNoSlot, archive.ErrSourceMismatch, archive.ErrExist,
		binlog.ErrGap, binlog.ErrCorrupt, binlog.ErrUnsupported, archive.ErrLockLost,
		oplog.ErrRollover, oplog.ErrNoOplog, archive.ErrUnsupported, archive.ErrCorrupt,
		archive.ErrNoIdentity, archive.ErrWrongIdentity, archive.ErrKeyFile,
	} {
		if !supervise.Permanent(fmt.Errorf("session: %w", err)) {
			t.Errorf("%q is not permanent", err)
		}
	}
	for _, err := range []error{nil, errTransient, context.Canceled, context.DeadlineExceeded, archive.ErrNotExist,
		supervise.ErrAgain, supervise.ErrDone, supervise.ErrFinalFlush} {
		if supervise.Permanent(err) {
			t.Errorf("%v is permanent", err)
		}
	}
}

func TestGapRecordedOnceAndReturned(t *testing.T) {
	h := newHarness()
	var recorded error
	h.opts.OnGap = func(gap error) error { h.gaps++; recorded = gap; return nil }
	var calls int
	gap := fmt.Errorf("%w: the server no longer has WAL from 0/3000000", wal.ErrGap)
	err := supervise.Run(context.Background(), h.opts, script(&calls, result{err: errTransient}, result{err: gap}))
	if !errors.Is(err, archive.ErrGap) || !errors.Is(err, wal.ErrGap) {
		t.Fatalf("Run = %v, want the gap", err)
	}
	if h.gaps != 1 || recorded != gap || calls != 2 {
		t.Fatalf("OnGap called %d times with %v after %d sessions: want once with the gap", h.gaps, recorded, calls)
	}
	if len(h.stops) != 1 || h.stops[0] != gap {
		t.Fatalf("Stop called with %v, want once with the gap", h.stops)
	}
	if !strings.Contains(h.log.String(), `msg="gap in the WAL archive: streaming stops; a new base backup is needed"`) ||
		!strings.Contains(h.log.String(), "source=postgres://u@db1:5432/postgres") {
		t.Fatalf("gap not logged with the stream and source:\n%s", h.log.String())
	}
}

func TestGapRecordFailureStillReturnsTheGap(t *testing.T) {
	h := newHarness()
	h.opts.OnGap = func(error) error { h.gaps++; return errors.New("store unreachable") }
	var calls int
	err := supervise.Run(context.Background(), h.opts, script(&calls, result{err: oplog.ErrRollover}))
	if !errors.Is(err, archive.ErrGap) || !strings.Contains(err.Error(), "recording it failed: store unreachable") {
		t.Fatalf("Run = %v, want the gap and the failed record", err)
	}
	if h.gaps != 1 || len(h.stops) != 1 || !errors.Is(h.stops[0], archive.ErrGap) {
		t.Fatalf("OnGap called %d times, Stop with %v", h.gaps, h.stops)
	}
}

// TestGapWithoutHook: an engine that records gaps in its session only has
// them logged and returned.
func TestGapWithoutHook(t *testing.T) {
	h := newHarness()
	var calls int
	err := supervise.Run(context.Background(), h.opts, script(&calls, result{err: oplog.ErrRollover}))
	if !errors.Is(err, oplog.ErrRollover) || !strings.Contains(h.log.String(), "gap in the WAL archive") {
		t.Fatalf("Run = %v, log:\n%s", err, h.log.String())
	}
}

func TestCancelFlushesAndStopsCleanly(t *testing.T) {
	h := newHarness()
	ctx, cancel := context.WithCancel(context.Background())
	err := supervise.Run(ctx, h.opts, func(ctx context.Context) (bool, error) {
		cancel()
		<-ctx.Done()
		return true, fmt.Errorf("receive: %w", ctx.Err())
	})
	if err != nil || len(h.stops) != 1 || h.stops[0] != nil {
		t.Fatalf("Run = %v, Stop called with %v: want a clean stop through Stop(nil)", err, h.stops)
	}
	if h.log.Len() != 0 {
		t.Fatalf("a requested stop logged:\n%s", h.log.String())
	}
}

func TestCancelDuringBackoff(t *testing.T) {
	h := newHarness()
	ctx, cancel := context.WithCancel(context.Background())
	h.opts.Sleep = func(ctx context.Context, d time.Duration) error {
		h.sleeps = append(h.sleeps, d)
		cancel()
		return ctx.Err()
	}
	var calls int
	err := supervise.Run(ctx, h.opts, script(&calls, result{err: errTransient}, result{err: errTransient}))
	if err != nil || calls != 1 || len(h.sleeps) != 1 || len(h.stops) != 1 || h.stops[0] != nil {
		t.Fatalf("Run = %v after %d sessions, %d sleeps, stops %v", err, calls, len(h.sleeps), h.stops)
	}
}

// TestFinalFlushFailureReported: a stop whose final flush fails is not a
// clean stop, whether the flush is Stop's or the session's own.
func TestFinalFlushFailureReported(t *testing.T) {
	t.Run("in Stop", func(t *testing.T) {
		h := newHarness()
		h.opts.Stop = func(err error) error {
			h.stops = append(h.stops, err)
			return fmt.Errorf("%w: put segment: disk full", supervise.ErrFinalFlush)
		}
		ctx, cancel := context.WithCancel(context.Background())
		err := supervise.Run(ctx, h.opts, func(ctx context.Context) (bool, error) {
			cancel()
			return false, ctx.Err()
		})
		if !errors.Is(err, supervise.ErrFinalFlush) || len(h.stops) != 1 {
			t.Fatalf("Run = %v, stops %v: want the failed final flush", err, h.stops)
		}
	})
	t.Run("in the session", func(t *testing.T) {
		h := newHarness()
		ctx, cancel := context.WithCancel(context.Background())
		flushErr := fmt.Errorf("%w: archive WAL: disk full (the slot still holds this WAL)", supervise.ErrFinalFlush)
		err := supervise.Run(ctx, h.opts, func(ctx context.Context) (bool, error) {
			cancel()
			return true, flushErr
		})
		if err != flushErr || len(h.stops) != 1 || h.stops[0] != flushErr {
			t.Fatalf("Run = %v, stops %v: want the session's failed final flush", err, h.stops)
		}
	})
}

// TestLeaseLostEndsWithItsCause: a context cancelled because the lease was
// lost is no clean stop: another writer owns the stream, so no engine's
// final flush runs (binlog's used to write after it).
func TestLeaseLostEndsWithItsCause(t *testing.T) {
	h := newHarness()
	ctx, cancel := context.WithCancelCause(context.Background())
	lost := fmt.Errorf("%w: lock %q was taken over", archive.ErrLockLost, "stream-wal")
	err := supervise.Run(ctx, h.opts, func(ctx context.Context) (bool, error) {
		cancel(lost)
		return false, ctx.Err()
	})
	if !errors.Is(err, archive.ErrLockLost) || len(h.stops) != 0 {
		t.Fatalf("Run = %v, stops %v: want the lost lease and no final flush", err, h.stops)
	}
}

// TestAgainAndDone: engine signals are neither logged nor backed off.
func TestAgainAndDone(t *testing.T) {
	h := newHarness()
	var calls int
	timelineSwitch := fmt.Errorf("timeline switch: %w", supervise.ErrAgain)
	err := supervise.Run(context.Background(), h.opts, script(&calls, result{err: timelineSwitch}, result{err: timelineSwitch}))
	if err != nil || calls != 3 || len(h.sleeps) != 0 || h.log.Len() != 0 {
		t.Fatalf("Run = %v after %d sessions, %d sleeps, log:\n%s", err, calls, len(h.sleeps), h.log.String())
	}
	if len(h.stops) != 1 || h.stops[0] != nil {
		t.Fatalf("ErrDone: Stop called with %v, want once with nil", h.stops)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://backup:s3cret@db1:5432/postgres?password=x&sslmode=require": "postgres://backup@db1:5432/postgres",
		"mongodb://u:p@h1:27017,h2:27017/?replicaSet=rs0":                       "mongodb://u@h1:27017,h2:27017/",
		"postgres:///postgres?host=/run/postgresql":                             "postgres:///postgres",
		"postgres://%zz:secret@host/":                                           "",
	} {
		if got := supervise.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(supervise.Redact(in), "s3cret") {
			t.Errorf("Redact(%q) kept the password", in)
		}
	}
}

// TestObserveFollowsSessions: the observer hears up only once a session
// says it streams, down with the error and the backoff when one fails
// (a source refusing connections is down, however long Run runs), and
// the stop.
func TestObserveFollowsSessions(t *testing.T) {
	h := newHarness()
	var states []supervise.State
	h.opts.Observe = func(s supervise.State) { states = append(states, s) }
	calls := 0
	err := supervise.Run(context.Background(), h.opts, func(ctx context.Context) (bool, error) {
		switch calls++; calls {
		case 1, 2:
			return false, errTransient // refused before streaming
		case 3:
			supervise.Connected(ctx)
			supervise.Connected(ctx) // once per session
			return true, errTransient
		}
		return false, supervise.ErrDone
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range states {
		switch {
		case s.Stopped:
			got = append(got, fmt.Sprintf("stopped(%v)", s.Err))
		case s.Up:
			got = append(got, "up")
		default:
			got = append(got, fmt.Sprintf("down(%v, %s)", s.Err, s.RetryIn))
		}
	}
	want := "down(connection reset by peer, 1s) down(connection reset by peer, 2s) up down(connection reset by peer, 1s) stopped(<nil>)"
	if strings.Join(got, " ") != want {
		t.Fatalf("states:\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
}
