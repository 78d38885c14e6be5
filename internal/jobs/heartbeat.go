package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/supervise"
)

// HeartbeatInterval is how often a running streamer records its state in
// the repository (and at once when the state changes).
const HeartbeatInterval = 20 * time.Second

// beat keeps one streamer's heartbeat (archive.Heartbeat) current.
type beat struct {
	repo     *archive.Repository
	log      *slog.Logger
	written  func(archive.Heartbeat, error)
	interval time.Duration
	changed  chan struct{}

	mu      sync.Mutex
	h       archive.Heartbeat
	lastErr string    // of the last failed write, logged once
	wrote   time.Time // the CaughtUp of the last record written
}

func newBeat(repo *archive.Repository, info engine.Info, source string, log *slog.Logger, interval time.Duration) *beat {
	if interval <= 0 {
		interval = HeartbeatInterval
	}
	host, _ := os.Hostname()
	now := time.Now().UTC()
	return &beat{repo: repo, log: log, interval: interval, changed: make(chan struct{}, 1),
		h: archive.Heartbeat{Engine: info.Name, Stream: info.Stream, Holder: fmt.Sprintf("%s/%d", host, os.Getpid()),
			Source: supervise.Redact(source), State: archive.StreamStarting, Since: now, Interval: interval.Seconds()}}
}

// observe follows the stream's state (supervise.Options.Observe).
func (b *beat) observe(s supervise.State) {
	b.mu.Lock()
	state, msg := archive.StreamReconnecting, ""
	switch {
	case s.Stopped:
		state = archive.StreamStopped
	case s.Up:
		state = archive.StreamStreaming
	}
	if s.Err != nil {
		msg = s.Err.Error()
	}
	if state != b.h.State || msg != b.h.Error {
		b.h.Since = time.Now().UTC()
	}
	b.h.State, b.h.Error, b.h.RetryIn = state, msg, s.RetryIn.Seconds()
	b.mu.Unlock()
	select {
	case b.changed <- struct{}{}:
	default:
	}
}

// durable notes an acknowledgment (engine.StreamJob.Durable), and when the
// archive caught up with the server as the agent's RPO gauge counts it.
func (b *beat) durable(p engine.StreamProgress) {
	now := time.Now().UTC()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.h.Durable = &now
	if at, ok := p.CaughtUp(now); ok && (b.h.CaughtUp == nil || at.After(*b.h.CaughtUp)) {
		at = at.UTC()
		b.h.CaughtUp = &at
		// Status measures the RPO from the record, the agent from this
		// call: a record much behind is written soon, so the two agree
		// within half an interval (a quiet FerretDB is read once a
		// minute, each read moving the caught-up time far).
		if at.Sub(b.wrote) > b.interval/2 {
			select {
			case b.changed <- struct{}{}:
			default:
			}
		}
	}
}

// where notes where the stream comes from and how far it is durable
// (engine.StreamJob.Durable), which a backup finds the streamer by; a
// change is written soon, not at the next interval.
func (b *beat) where(p engine.StreamProgress) {
	b.mu.Lock()
	if p.Server != "" && p.Server != b.h.Server && b.h.Server != "" {
		b.log.Info("the stream now comes from another server", "from", b.h.Server, "to", p.Server)
	}
	moved := p.Server != b.h.Server || p.Slot != b.h.Slot || p.Timeline != b.h.Timeline
	b.h.Server, b.h.Slot, b.h.Position, b.h.Timeline = p.Server, p.Slot, p.Position, p.Timeline
	b.mu.Unlock()
	if moved {
		select {
		case b.changed <- struct{}{}:
		default:
		}
	}
}

// run writes heartbeats until ctx ends; the returned stop writes the last
// one, with the error streaming ended on.
func (b *beat) run(ctx context.Context) (stop func(err error)) {
	done := make(chan struct{})
	outer := ctx
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer close(done)
		t := time.NewTicker(b.interval)
		defer t.Stop()
		b.write(ctx)
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-b.changed:
				// Several changes in a burst (a reconnect loop) make one write.
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
			b.write(ctx)
		}
	}()
	return func(err error) {
		cancel()
		<-done
		if errors.Is(err, archive.ErrLockLost) || errors.Is(context.Cause(outer), archive.ErrLockLost) {
			return // another streamer owns the stream, and its heartbeat
		}
		b.observe(supervise.State{Stopped: true, Err: err})
		wctx, wcancel := context.WithTimeout(context.WithoutCancel(outer), 10*time.Second)
		defer wcancel()
		b.write(wctx)
	}
}

func (b *beat) write(ctx context.Context) {
	b.mu.Lock()
	h := b.h
	if h.CaughtUp != nil {
		b.wrote = *h.CaughtUp
	}
	b.mu.Unlock()
	h.Updated = time.Now().UTC()
	err := b.repo.PutHeartbeat(ctx, h)
	if ctx.Err() != nil {
		return
	}
	if b.written != nil {
		b.written(h, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case err != nil && err.Error() != b.lastErr:
		b.log.Warn("stream heartbeat not written to the repository", "err", err)
		b.lastErr = err.Error()
	case err == nil:
		b.lastErr = ""
	}
}

// both calls f and then g, either of which may be nil.
func both[T any](f, g func(T)) func(T) {
	return func(v T) {
		if f != nil {
			f(v)
		}
		if g != nil {
			g(v)
		}
	}
}
