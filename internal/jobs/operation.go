package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/supervise"
)

// OperationInterval is how often a running operation rewrites its record
// (archive.Operation) while its progress changes.
const OperationInterval = 10 * time.Second

// tracker keeps one running operation's record current in the repository.
// Recording is best effort: a restore may run with read-only access to
// the repository, and its work must not fail for want of a status line.
type tracker struct {
	repo     *archive.Repository
	log      *slog.Logger
	interval time.Duration
	stop     context.CancelFunc
	done     chan struct{}

	mu     sync.Mutex
	op     archive.Operation
	failed bool // a write failed: logged once
}

// track records that an operation of kind runs on subject (a source or
// target address; its password is never recorded) and keeps the record
// current until end is called. The first record is written before it
// returns, so status shows the operation from its start.
func track(ctx context.Context, repo *archive.Repository, log *slog.Logger, kind, eng, subject string) *tracker {
	host, _ := os.Hostname()
	now := time.Now().UTC()
	t := &tracker{repo: repo, log: log, interval: OperationInterval, done: make(chan struct{}),
		op: archive.Operation{ID: fmt.Sprintf("%016x-%s", now.UnixNano(), kind), Kind: kind, Engine: eng,
			Holder: fmt.Sprintf("%s/%d", host, os.Getpid()), Subject: supervise.Redact(subject), Started: now,
			Interval: OperationInterval.Seconds()}}
	t.write(ctx)
	ctx, t.stop = context.WithCancel(ctx)
	go t.run(ctx)
	return t
}

// step notes progress (engine.Job.Progress); it is written at the next tick.
func (t *tracker) step(s engine.Step) {
	t.mu.Lock()
	t.op.Phase, t.op.Unit, t.op.Done, t.op.Total = s.Phase, s.Unit, s.Done, s.Total
	t.mu.Unlock()
}

func (t *tracker) run(ctx context.Context) {
	defer close(t.done)
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// Rewritten even unchanged: a record that stops being renewed
			// is how status tells a dead operation from a slow one.
			t.write(ctx)
		}
	}
}

func (t *tracker) write(ctx context.Context) {
	t.mu.Lock()
	op := t.op
	op.Updated = time.Now().UTC()
	t.mu.Unlock()
	err := t.repo.PutOperation(ctx, op)
	if err != nil && ctx.Err() == nil {
		t.mu.Lock()
		defer t.mu.Unlock()
		if !t.failed {
			t.log.Debug("running operation not recorded in the repository", "operation", op.ID, "err", err)
			t.failed = true
		}
	}
}

// end stops the updates and deletes the operation's records, even when
// ctx was cancelled (an interrupted restore ends its record too).
func (t *tracker) end(ctx context.Context) {
	t.stop()
	<-t.done
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := t.repo.EndOperation(dctx, t.op.ID); err != nil {
		t.log.Debug("running operation's record not deleted", "operation", t.op.ID, "err", err)
	}
}
