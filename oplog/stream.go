package oplog

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/supervise"
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
	// Observe, when set, hears the stream go up, down and stop (see
	// supervise.Options.Observe).
	Observe func(supervise.State)
	// Connect overrides how the client is made (tests); default mongo.Connect.
	Connect func(ctx context.Context, url string) (*mongo.Client, error)

	// majority replaces hello's majority commit point (tests: FerretDB
	// has none, so a test sets one to see entries held back).
	majority func(ctx context.Context) (TS, bool, error)
}

// Errors that end streaming instead of being retried (see
// supervise.Permanent).
var (
	// ErrRollover: the oplog no longer holds the resume point, so history
	// between the archive's end and the oplog's oldest entry is lost.
	ErrRollover = archive.Class(archive.ErrGap, "oplog rolled over past the archive's end (gap)")
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
	// No OnGap: a session records a rollover itself (rollover), since it
	// may continue past the gap from a newer base backup's start.
	return supervise.Run(ctx, supervise.Options{Stream: "oplog", Source: supervise.Redact(cfg.Source), Log: cfg.Log,
		Stop: t.stop, Observe: cfg.Observe}, t.session)
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

// errDone: everything up to Until is durable.
var errDone = fmt.Errorf("reached the requested end: %w", supervise.ErrDone)

// stop makes what arrived durable on a clean stop. When streaming ends on
// an error it leaves what is pending unflushed (the next streamer reads it
// from the oplog again): after a lost lease in particular, another writer
// owns the stream now.
func (t *tailer) stop(err error) error {
	if err != nil || t.w == nil || t.w.Pending() == 0 {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := t.w.Flush(ctx); err != nil {
		return fmt.Errorf("%w: %w", supervise.ErrFinalFlush, err)
	}
	return nil
}
