package binlog

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/supervise"
)

// Config configures Stream.
type Config struct {
	Repo   *archive.Repository
	Source Source
	// Sources, when it names several servers of one replication cluster,
	// replaces Source: the streamer streams from the one that is a
	// primary, resolves again on every reconnect, and continues the
	// archive on a promoted replica by GTID (follow.go).
	Sources  []Source
	ServerID uint32 // replica server id; 0 derives one from the repository id
	// FlushInterval bounds how long arrived events stay in memory only
	// (default 1s): the RPO under load.
	FlushInterval time.Duration
	// Heartbeat is the period the server is asked to send heartbeats at
	// when idle (default 5s); a link silent for three periods is dropped
	// and re-established.
	Heartbeat time.Duration
	// Start is where an empty archive begins; zero means the start of the
	// oldest binlog file the server still has.
	Start Position
	// Segment size/age caps (archive defaults when zero).
	MaxSegmentBytes int64
	MaxSegmentAge   time.Duration
	Log             *slog.Logger
	// Progress, when set, is called after every flush that made events
	// durable (tests, metrics).
	Progress func(Progress)
	// Observe, when set, hears the stream go up, down and stop (see
	// supervise.Options.Observe).
	Observe func(supervise.State)
}

// Progress is the streamer's state after a flush.
type Progress struct {
	Stream    string
	Server    string    // host:port streamed from
	Durable   Position  // what the repository holds
	EventTime time.Time // commit time of the newest durable transaction
	Events    int64     // events archived by this process
	// CaughtUp: a heartbeat came while nothing was pending, so the
	// repository holds everything the server had written.
	CaughtUp bool
}

// Errors that end streaming instead of being retried (see
// supervise.Permanent).
var (
	// ErrGap: history the archive needs is gone from the server, or the
	// server's history is not the archived one.
	ErrGap = archive.Class(archive.ErrGap, "gap in the binlog archive")
	// ErrUnsupported: the server is not configured for archiving.
	ErrUnsupported = archive.Class(archive.ErrMisconfigured, "server cannot be archived")
)

// Stream archives the source's binlog until ctx is cancelled, reconnecting
// with backoff after transient failures. It returns nil after a clean stop
// and an error for what retrying cannot fix: a gap (recorded in the
// repository, so status shows it), a foreign server, corrupt events.
func Stream(ctx context.Context, cfg Config) error {
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.ServerID == 0 {
		cfg.ServerID = DefaultServerID(cfg.Repo.Config().ID)
	}
	if len(cfg.Sources) == 0 {
		cfg.Sources = []Source{cfg.Source}
	}
	s := &streamer{cfg: cfg, src: cfg.Sources[0]}
	return supervise.Run(ctx, supervise.Options{Stream: "binlog", Source: addrs(cfg.Sources), Log: cfg.Log,
		OnGap: s.recordGap, Stop: s.stop, Observe: cfg.Observe}, func(ctx context.Context) (bool, error) {
		progressed, err := s.session(ctx)
		return progressed, missingPrivilege(err)
	})
}

// stop makes what arrived durable on the way out, whatever ends streaming.
// A failed final flush loses nothing the server does not still have, but
// the stop is not clean.
func (s *streamer) stop(err error) error {
	if s.w == nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if ferr := s.w.Close(ctx); ferr != nil {
		ferr = fmt.Errorf("%w: binlog archive: %w", supervise.ErrFinalFlush, ferr)
		if err == nil {
			return ferr
		}
		return fmt.Errorf("%w (%v)", err, ferr)
	}
	s.report()
	return err
}

func (s *streamer) recordGap(gapErr error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.cfg.Repo.RecordGap(ctx, archive.GapRecord{Engine: "mysql", Detected: time.Now().UTC(),
		From: s.cur.String(), Reason: gapErr.Error()})
}
