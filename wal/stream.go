package wal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/supervise"
)

// Config configures a Streamer.
type Config struct {
	Repo          *archive.Repository
	Source        string // postgres:// URL; the password comes from ~/.pgpass, PGPASSFILE or PGPASSWORD
	Slot          string // physical replication slot; "" only with NoSlot
	CreateSlot    bool
	NoSlot        bool
	Synchronous   bool          // make every message durable and acknowledge at once (RPO 0)
	FlushInterval time.Duration // make arrived WAL durable at least this often
	AppName       string        // application_name, what synchronous_standby_names must name
	// StartAt is where an empty archive begins (a base backup's start);
	// 0 means the server's current position.
	StartAt LSN
	Log     *slog.Logger
	// Progress, when set, is called after each acknowledgment (tests, metrics).
	Progress func(Progress)
	// Observe, when set, hears the stream go up, down and stop (see
	// supervise.Options.Observe).
	Observe func(supervise.State)
	// Server, when set, is the one server every session uses (a backup
	// archiving its own range from the server it read); else the source is
	// resolved anew each session.
	Server *Server
	// SessionAttrs overrides the source's target_session_attrs ("": the
	// URL's; see Resolve).
	SessionAttrs string
	// HeldElsewhere: with NoSlot, another session's slot holds the WAL (a
	// backup's temporary slot), so there is no gap to warn of.
	HeldElsewhere bool

	server *Server // the session's resolved server
}

// Progress is the streamer's position after an acknowledgment.
type Progress struct {
	Server    string // host:port the WAL comes from
	Slot      string
	TLI       uint32
	Durable   LSN // reported to the server as written and flushed
	ServerEnd LSN // the server's WAL end as of its last message: Durable lags it by the unarchived WAL
}

// Errors that end streaming instead of being retried (see
// supervise.Permanent).
var (
	ErrGap    = archive.Class(archive.ErrGap, "gap in the WAL archive")
	ErrNoSlot = archive.Class(archive.ErrMisconfigured, "replication slot does not exist")
	// errPermanent: anything else about the server or the repository that
	// a reconnect cannot change (a logical slot, another WAL segment size,
	// a timeline the archive does not descend from).
	errPermanent = archive.Class(archive.ErrMisconfigured, "permanent")
)

var slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// Stream archives WAL until ctx is cancelled, reconnecting with backoff
// after transient failures. It returns nil after a clean stop, and an error
// for what retrying cannot fix: a gap, a foreign cluster, a missing slot.
func Stream(ctx context.Context, cfg Config) error {
	if cfg.AppName == "" {
		cfg.AppName = "tidemark"
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if !cfg.NoSlot && !slotName.MatchString(cfg.Slot) {
		return fmt.Errorf("slot name %q: want 1-63 of a-z, 0-9, _", cfg.Slot)
	}
	if cfg.NoSlot && !cfg.HeldElsewhere {
		cfg.Log.Warn("streaming without a replication slot: the server may recycle WAL before it is archived, which would be a gap")
	}
	return supervise.Run(ctx, supervise.Options{Stream: "WAL", Source: supervise.Redact(cfg.Source), Log: cfg.Log,
		OnGap: func(gap error) error { return recordGap(cfg, gap) }, Observe: cfg.Observe},
		func(ctx context.Context) (bool, error) { return session(ctx, cfg) })
}

// errTimelineSwitch: the server ended the timeline being streamed; the
// next session follows the new one at once.
var errTimelineSwitch = fmt.Errorf("timeline switch: %w", supervise.ErrAgain)

// recordGap makes a gap visible in `tidemark status` for good.
func recordGap(cfg Config, gapErr error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	from := ""
	if g, err := RepoGeometry(ctx, cfg.Repo); err == nil {
		if st, err := LoadState(ctx, cfg.Repo.Store(), g); err == nil && st.Latest() != nil {
			from = fmt.Sprintf("timeline %d %s", st.Latest().TLI, st.Latest().End)
		}
	}
	return cfg.Repo.RecordGap(ctx, archive.GapRecord{Engine: "postgres", Detected: time.Now().UTC(), From: from, Reason: gapErr.Error()})
}

// session is one connection's worth of streaming. progressed reports
// whether anything was acknowledged, to reset the reconnect backoff.
func session(ctx context.Context, cfg Config) (progressed bool, err error) {
	// Resolved anew each session: after a failover the next session finds
	// the promoted server.
	server := cfg.Server
	if server == nil {
		if server, err = Resolve(ctx, cfg.Source, cfg.SessionAttrs); err != nil {
			return false, connectError(cfg.Source, err)
		}
	}
	conn, err := pgconn.ConnectConfig(ctx, server.Replication(cfg.AppName))
	if err != nil {
		return false, connectError(cfg.Source, err)
	}
	defer conn.Close(context.Background())
	cfg.server = server

	src, err := Identify(ctx, conn, cfg.Repo)
	if err != nil {
		return false, err
	}
	slotLSN, created, err := prepareSlot(ctx, conn, cfg, src.Version)
	if err != nil {
		return false, err
	}
	state, err := LoadState(ctx, cfg.Repo.Store(), src.Geometry)
	if err != nil {
		return false, err
	}
	if latest := state.Latest(); created && latest != nil && latest.TLI < src.ServerTLI {
		// A failover: the slot is new on the promoted server and begins at
		// its last checkpoint, which says nothing of what WAL it still has.
		// If what we need is gone, START_REPLICATION says so: a gap.
		slotLSN = 0
	}
	w := writer{repo: cfg.Repo, g: src.Geometry, log: cfg.Log}
	pos, err := startPosition(ctx, conn, cfg, src, state, slotLSN, w)
	if err != nil {
		return false, err
	}
	cfg.Log.Info("streaming WAL", "server", server.Addr, "system_identifier", src.SystemID, "timeline", pos.tli, "start", pos.start,
		"durable", pos.durable, "slot", cfg.Slot, "synchronous", cfg.Synchronous)
	if err := startReplication(ctx, conn, cfg, pos); err != nil {
		return false, err
	}
	supervise.Connected(ctx)
	r := newReceiver(cfg, w, pos)
	return r.run(ctx, conn)
}

// prepareSlot checks (or creates) the slot and returns its restart LSN
// (0 when it has none, or with NoSlot), and whether it created it.
func prepareSlot(ctx context.Context, conn *pgconn.PgConn, cfg Config, v Version) (LSN, bool, error) {
	if cfg.NoSlot {
		return 0, false, nil
	}
	slot, err := ReadSlot(ctx, conn, v, cfg.server, cfg.Slot)
	if err != nil {
		return 0, false, err
	}
	if !slot.Exists {
		if !cfg.CreateSlot {
			return 0, false, fmt.Errorf("%w: %q (create it with --create-slot, or stream with --no-slot and accept possible gaps)", ErrNoSlot, cfg.Slot)
		}
		_, err := conn.Exec(ctx, fmt.Sprintf("CREATE_REPLICATION_SLOT %s PHYSICAL RESERVE_WAL", cfg.Slot)).ReadAll()
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == "42710": // created meanwhile (by a backup)
		case err != nil:
			return 0, false, fmt.Errorf("create replication slot %s: %w", cfg.Slot, err)
		default:
			cfg.Log.Info("created physical replication slot", "slot", cfg.Slot, "server", cfg.server.Addr)
		}
		lsn, _, err := prepareSlot(ctx, conn, Config{Slot: cfg.Slot, Source: cfg.Source, Log: cfg.Log, server: cfg.server}, v)
		return lsn, true, err
	}
	if slot.Type != "physical" {
		return 0, false, fmt.Errorf("%w: slot %q is a %s slot, not physical", errPermanent, cfg.Slot, slot.Type)
	}
	return slot.RestartLSN, false, nil
}
