// Package supervise keeps a database stream running: it runs one session
// after another, reconnecting with backoff after failures retrying can fix,
// and ends streaming on the ones it cannot. The WAL, binlog and oplog
// streamers share it, so they agree on which errors are permanent, how gaps
// are reported and how a stop is made durable.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/tidemark/tidemark/archive"
)

// Options configure Run. Only Stream is required.
type Options struct {
	// Stream names the stream in log lines: "WAL", "binlog", "oplog".
	Stream string
	// Source says which database the stream comes from in log lines: an
	// address, never a password (see Redact).
	Source string
	Log    *slog.Logger
	// Initial and Max bound the reconnect backoff (defaults 1s and 30s): it
	// doubles after each failed session up to Max, and starts again from
	// Initial after a session that made progress.
	Initial, Max time.Duration
	// Sleep waits d, or until ctx is done (then it returns ctx's error).
	// Default: a timer. Tests inject one that returns at once.
	Sleep func(ctx context.Context, d time.Duration) error
	// OnGap, when set, records a gap in the repository, so status shows it
	// for good, before Run returns it. An engine whose session records its
	// gaps itself (it may continue past them) leaves it nil.
	OnGap func(gap error) error
	// Stop, when set, is called once as streaming ends, with the error Run
	// is about to return (nil for a clean stop); Run returns what Stop
	// returns. It is the final flush of an engine whose writer outlives
	// sessions; a failure should wrap ErrFinalFlush. It is not called when
	// the stream's lease was lost (archive.ErrLockLost): another writer
	// owns the stream then, and nothing may be written.
	Stop func(err error) error
	// Observe, when set, hears the stream's state as it changes: up once a
	// session reports (Connected) that it streams, down with the error
	// each time a session fails and is retried, stopped as Run returns.
	// Monitoring reads liveness from it (the agent's stream_up, the
	// heartbeat in the repository) rather than from Run merely running.
	Observe func(State)
}

// State is where a stream stands.
type State struct {
	Up      bool          // a session is streaming
	Stopped bool          // Run returned: Err is why (nil: a clean stop)
	Err     error         // why the stream is down or stopped
	RetryIn time.Duration // down: when the next session starts
}

type connectedKey struct{}

// Connected tells Run that the session ctx belongs to is streaming: the
// server accepted it and data flows. Sessions call it once they are past
// connecting and checking (a later call does nothing).
func Connected(ctx context.Context) {
	if f, ok := ctx.Value(connectedKey{}).(func()); ok {
		f()
	}
}

// Signals a session returns that are not failures to report.
var (
	// ErrAgain: start the next session at once, without backoff or a log
	// line (WAL: the server ended a timeline; the next one follows).
	ErrAgain = errors.New("reconnect at once")
	// ErrDone: the stream reached the end it was asked for; a clean stop.
	ErrDone = errors.New("stream reached its requested end")
	// ErrFinalFlush: making what arrived durable on a requested stop
	// failed. Nothing is lost (the server still has it) but the stop is not
	// clean, so a session that flushes on its way out wraps this, and Run
	// returns it rather than nil.
	ErrFinalFlush = errors.New("final flush failed")
)

// Run runs session until ctx is done, the session returns ErrDone, or it
// fails with a Permanent error. A gap (archive.ErrGap) is logged and
// recorded with OnGap before it is returned. Other failures are logged,
// naming the stream, its source and the error, and retried after a backoff;
// progressed reports whether the session made anything durable, which
// resets the backoff. Every return passes through Stop.
func Run(ctx context.Context, o Options, session func(ctx context.Context) (progressed bool, err error)) error {
	o.defaults()
	backoff := o.Initial
	for {
		var once sync.Once
		sctx := context.WithValue(ctx, connectedKey{}, func() { once.Do(func() { o.observe(State{Up: true}) }) })
		progressed, err := session(sctx)
		switch {
		case errors.Is(err, ErrDone):
			return o.stop(nil)
		case ctx.Err() != nil:
			return o.ended(ctx, err)
		case errors.Is(err, ErrAgain):
			continue
		case isGap(err):
			return o.stop(o.gap(err))
		case Permanent(err):
			return o.stop(err)
		}
		if progressed {
			backoff = o.Initial
		}
		o.Log.Error(o.Stream+" streaming interrupted; reconnecting", o.attrs("err", err, "retry_in", backoff)...)
		o.observe(State{Err: err, RetryIn: backoff})
		if o.Sleep(ctx, backoff) != nil {
			return o.ended(ctx, nil)
		}
		backoff = min(2*backoff, o.Max)
	}
}

func (o *Options) defaults() {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Initial <= 0 {
		o.Initial = time.Second
	}
	if o.Max < o.Initial {
		o.Max = max(30*time.Second, o.Initial)
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
}

// ended is the result once ctx is done: a clean stop, unless the session's
// own final flush failed, or ctx ended for a reason that is itself
// permanent (a lost lease: another writer owns the stream now).
func (o *Options) ended(ctx context.Context, err error) error {
	if errors.Is(err, ErrFinalFlush) {
		return o.stop(err)
	}
	if cause := context.Cause(ctx); Permanent(cause) {
		return o.stop(cause)
	}
	return o.stop(nil)
}

func (o *Options) gap(err error) error {
	o.Log.Error("gap in the "+o.Stream+" archive: streaming stops; a new base backup is needed", o.attrs("err", err)...)
	if o.OnGap == nil {
		return err
	}
	if rerr := o.OnGap(err); rerr != nil {
		return fmt.Errorf("%w (and recording it failed: %v)", err, rerr)
	}
	return err
}

func (o *Options) stop(err error) error {
	if o.Stop != nil && !errors.Is(err, archive.ErrLockLost) {
		err = o.Stop(err)
	}
	o.observe(State{Stopped: true, Err: err})
	return err
}

func (o *Options) observe(s State) {
	if o.Observe != nil {
		o.Observe(s)
	}
}

// attrs puts the source first, when known: reconnect logs must say which
// database they are about.
func (o *Options) attrs(kv ...any) []any {
	if o.Source == "" {
		return kv
	}
	return append([]any{"source", o.Source}, kv...)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Redact returns a source URL fit for logs: scheme, user, hosts and path,
// without the password or the query (which may carry one). An unparseable
// URL yields "", never the raw text.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	if u.User != nil {
		r.User = url.User(u.User.Username())
	}
	return r.String()
}
