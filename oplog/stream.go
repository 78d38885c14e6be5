package oplog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tidemark/tidemark/archive"
)

// Config configures Stream.
type Config struct {
	Repo          *archive.Repository
	Source        string // mongodb:// URL (password from the environment, never the command line)
	FlushInterval time.Duration
	// StartAt is where an empty stream begins (a base backup's start); zero
	// means the newest entry in the server's oplog.
	StartAt TS
	// StartSeen says the caller saw the oplog empty when it chose StartAt,
	// so an oplog whose oldest entry is later is no gap.
	StartSeen bool
	// Until, when set, ends streaming once everything up to it is durable
	// (a backup archiving its own oplog window when no streamer runs).
	Until TS
	Log   *slog.Logger
	// Progress, when set, is called after each flush with the durable end.
	Progress func(durable TS)
	// CaughtUp, when set, is called at a flush when the cursor had nothing
	// more to return and nothing is pending: the archive holds the oplog
	// as of then (the agent's RPO on an idle database).
	CaughtUp func(at time.Time)
	// Connect overrides how the client is made (tests); default mongo.Connect.
	Connect func(ctx context.Context, url string) (*mongo.Client, error)

	// majority replaces hello's majority commit point (tests: FerretDB
	// has none, so a test sets one to see entries held back).
	majority func(ctx context.Context) (TS, bool, error)
}

// Errors that end streaming instead of being retried.
var (
	// ErrRollover: the oplog no longer holds the resume point, so history
	// between the archive's end and the oplog's oldest entry is lost.
	ErrRollover = archive.Class(archive.ErrGap, "oplog rolled over past the archive's end (gap)")
	errFinal    = errors.New("final flush failed")
)

// Stream archives the oplog until ctx is cancelled (or Until is durable),
// reconnecting with backoff after transient failures. It returns nil after
// a clean stop and an error for what retrying cannot fix: a gap (recorded
// in the repository), a foreign cluster, a server with no oplog.
func Stream(ctx context.Context, cfg Config) error {
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Connect == nil {
		cfg.Connect = Connect
	}
	t := &tailer{cfg: cfg, seen: map[string]TS{}}
	backoff := time.Second
	for {
		progressed, err := t.session(ctx)
		if errors.Is(err, errDone) {
			return nil
		}
		if ctx.Err() != nil {
			if ferr := t.finalFlush(); ferr != nil {
				return ferr
			}
			return nil
		}
		if errors.Is(err, ErrRollover) {
			cfg.Log.Error("oplog rollover: streaming stops; a new base backup is needed", "err", err)
			return err
		}
		if errors.Is(err, ErrNoOplog) || errors.Is(err, archive.ErrSourceMismatch) || errors.Is(err, archive.ErrExist) ||
			errors.Is(err, archive.ErrUnsupported) || errors.Is(err, archive.ErrCorrupt) {
			return err
		}
		if progressed {
			backoff = time.Second
		}
		cfg.Log.Error("oplog streaming interrupted; reconnecting", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return t.finalFlush()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// Connect opens a client for url with timeouts suited to a long-running
// streamer.
func Connect(ctx context.Context, url string) (*mongo.Client, error) {
	c, err := mongo.Connect(options.Client().ApplyURI(url).SetAppName("tidemark").
		SetServerSelectionTimeout(10 * time.Second).SetConnectTimeout(10 * time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to MongoDB: %w", err)
	}
	return c, nil
}

var errDone = errors.New("reached the requested end")

// finalFlush makes what arrived durable on a requested stop.
func (t *tailer) finalFlush() error {
	if t.w == nil || t.w.Pending() == 0 || errors.Is(context.Cause(t.ctx), archive.ErrLockLost) {
		return nil // a lost lease means another writer owns the stream now
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := t.w.Flush(ctx); err != nil {
		return fmt.Errorf("%w: %w", errFinal, err)
	}
	return nil
}
