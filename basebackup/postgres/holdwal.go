package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tidemark/tidemark/basebackup"
	"github.com/tidemark/tidemark/wal"
)

// A backup is restorable only with the WAL from its start to its stop.
// Whoever archives that WAL, the server must keep it until then, and no
// backup may leave behind a replication slot that nothing reads (it would
// keep WAL on the server until its disk fills). So a TEMPORARY slot on the
// backup's own connection holds it (the server drops it when that
// connection ends, however the backup ends); a running streamer, found by
// its heartbeat in the repository, archives it, else the backup archives
// the range itself, without a slot of its own.

// walHold is what keeps the backup's WAL and who archives it.
type walHold struct {
	streamer  string // the running streamer relied on, "" when none
	heartbeat bool   // it was found by its heartbeat
	tempSlot  string // the temporary slot held on the backup's connection
	server    *wal.Server
}

// holdWAL holds the backup's WAL with a temporary slot and finds the
// running streamer that will archive it. It is called before BASE_BACKUP
// starts. The slot is held even when a streamer runs: should the streamer
// stop before it archived the range, the backup archives it itself, and
// the WAL must still be there.
func holdWAL(ctx context.Context, conn *pgconn.PgConn, cfg Config, server *wal.Server) (walHold, error) {
	// Unique per attempt: a refused incremental's connection, and its
	// slot, may still be open when the full backup it falls back to starts.
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return walHold{}, err
	}
	h := walHold{server: server, tempSlot: fmt.Sprintf("tidemark_backup_%d_%x", os.Getpid(), suffix)}
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE_REPLICATION_SLOT %s TEMPORARY PHYSICAL RESERVE_WAL", h.tempSlot)).ReadAll(); err != nil {
		return h, fmt.Errorf("create a temporary replication slot to hold the backup's WAL: %w", err)
	}
	hb, err := cfg.Repo.LiveHeartbeat(ctx, "postgres", time.Now())
	if err != nil {
		return h, fmt.Errorf("look for a running streamer: %w", err)
	}
	if hb != nil {
		h.streamer, h.heartbeat = fmt.Sprintf("the streamer %s (slot %q on %s)", hb.Holder, hb.Slot, hb.Server), true
		if cfg.Slot != "" && hb.Slot != "" && cfg.Slot != hb.Slot {
			cfg.Log.Warn("--slot names another slot than the running streamer reads; relying on the streamer", "slot", cfg.Slot, "streamer_slot", hb.Slot)
		}
		cfg.Log.Info("a streamer is running: it archives the backup's WAL", "holder", hb.Holder, "slot", hb.Slot,
			"server", hb.Server, "durable", hb.Position, "timeline", hb.Timeline, "state", hb.State)
		return h, nil
	}
	if cfg.Slot != "" {
		active, err := slotActive(ctx, server, cfg.Slot)
		if err != nil {
			return h, err
		}
		if active {
			h.streamer = fmt.Sprintf("the streamer on slot %q", cfg.Slot)
			return h, nil
		}
	}
	cfg.Log.Info("no streamer is running: a temporary replication slot holds the backup's WAL until the backup has archived it",
		"slot", h.tempSlot, "server", server.Addr)
	return h, nil
}

// release drops the temporary slot once the WAL is archived, rather than
// when the connection closes, so that it is gone when the backup reports
// success. A failure is only logged: the server drops it with the session.
func (h walHold) release(ctx context.Context, conn *pgconn.PgConn, cfg Config) {
	if h.tempSlot == "" {
		return
	}
	if _, err := conn.Exec(ctx, "DROP_REPLICATION_SLOT "+h.tempSlot).ReadAll(); err != nil {
		cfg.Log.Warn("drop the temporary replication slot (the server drops it as the backup disconnects)", "slot", h.tempSlot, "err", err)
	}
}

// ensureWAL waits until the repository holds the WAL up to stop on tli:
// archived by the running streamer, or by the backup itself. It says which.
func ensureWAL(ctx context.Context, cfg Config, hold walHold, g wal.Geometry, tli uint32, start, stop pglogrepl.LSN) (string, error) {
	reached := func() (bool, error) {
		st, err := wal.LoadState(ctx, cfg.Repo.Store(), g)
		if err != nil {
			return false, err
		}
		for _, tl := range st.Timelines {
			if tl.TLI >= tli && tl.End >= stop {
				return true, nil
			}
		}
		return false, nil
	}
	if ok, err := reached(); ok || err != nil {
		return "streamer", firstErr(err, covers(ctx, cfg, g, tli, start))
	}
	if hold.streamer != "" {
		cfg.Log.Info("waiting for the running streamer to archive the backup's WAL", "stop_lsn", stop)
		ok, err := basebackup.AwaitStreamer(ctx, cfg.WALTimeout, whileLive(ctx, cfg, hold, reached))
		if ok || err != nil && !errors.Is(err, errStreamerGone) {
			return "streamer", firstErr(err, covers(ctx, cfg, g, tli, start))
		}
		if err == nil {
			return "", fmt.Errorf("%s did not archive up to %s within %s (see `tidemark status`)", hold.streamer, stop, cfg.WALTimeout)
		}
		cfg.Log.Warn("the streamer stopped before archiving the backup's WAL: archiving it itself", "streamer", hold.streamer)
	}
	cfg.Log.Info("archiving the backup's WAL range itself", "stop_lsn", stop)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var got bool
	// No slot of its own: the temporary slot on the backup's connection,
	// still open, holds the WAL on this same server.
	err := wal.Stream(sctx, wal.Config{Repo: cfg.Repo, Source: cfg.Source, Server: hold.server, NoSlot: true, HeldElsewhere: true,
		FlushInterval: 200 * time.Millisecond, StartAt: start, AppName: "tidemark_backup_wal",
		Log: cfg.Log, Progress: func(p wal.Progress) {
			if p.TLI >= tli && p.Durable >= stop {
				got = true
				cancel()
			}
		}})
	if err != nil {
		return "", err
	}
	if !got {
		return "", ctx.Err()
	}
	return "backup", nil
}

var errStreamerGone = errors.New("the streamer stopped")

// whileLive wraps reached for a wait on a streamer found by its heartbeat:
// once its heartbeat says it stopped or went silent (killed), waiting
// longer is pointless, and the wait ends with errStreamerGone.
func whileLive(ctx context.Context, cfg Config, hold walHold, reached func() (bool, error)) func() (bool, error) {
	var checked time.Time
	return func() (bool, error) {
		if ok, err := reached(); ok || err != nil || !hold.heartbeat || time.Since(checked) < 2*time.Second {
			return ok, err
		}
		checked = time.Now()
		hb, err := cfg.Repo.LiveHeartbeat(ctx, "postgres", checked)
		if err == nil && hb == nil {
			return false, errStreamerGone
		}
		return false, nil // an unreadable heartbeat is no reason to stop waiting
	}
}

// covers refuses a backup whose start lies before the archived WAL: a
// streamer started after the backup's checkpoint (on a standby, the last
// checkpoint it replayed, which may be old) cannot archive what came
// before, and the backup would never restore.
func covers(ctx context.Context, cfg Config, g wal.Geometry, tli uint32, start pglogrepl.LSN) error {
	st, err := wal.LoadState(ctx, cfg.Repo.Store(), g)
	if err != nil {
		return err
	}
	for _, tl := range st.Timelines {
		if tl.TLI <= tli && tl.Start <= start {
			return nil
		}
	}
	return fmt.Errorf("%w: the backup starts at %s but the WAL archive begins later: the streamer started after the backup's checkpoint "+
		"(from a standby: the last checkpoint it replayed); run CHECKPOINT on the primary and back up again", wal.ErrGap, start)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// slotActive reports whether a streamer is connected on the slot.
func slotActive(ctx context.Context, server *wal.Server, slot string) (bool, error) {
	conn, err := pgconn.ConnectConfig(ctx, server.Ordinary())
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	res := conn.ExecParams(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", [][]byte{[]byte(slot)}, nil, nil, nil).Read()
	if res.Err != nil {
		return false, fmt.Errorf("read slot %s: %w", slot, res.Err)
	}
	return len(res.Rows) == 1 && string(res.Rows[0][0]) == "t", nil
}

// ErrStandbyLag: the standby's replay lags more than --max-lag.
var ErrStandbyLag = errors.New("the standby lags too far behind its primary")

// awaitReplay measures how far a standby's replay lags (behind its
// primary when the source names it, else behind what the standby
// received), logs it, and with MaxLag set waits up to LagWait for it to
// come within MaxLag, refusing the backup if it does not.
func awaitReplay(ctx context.Context, cfg Config, standby *wal.Server) (time.Duration, error) {
	var primaryLSN pglogrepl.LSN
	if standby.Multi {
		if p, err := wal.Resolve(ctx, cfg.Source, wal.AttrsPrimary); err == nil {
			primaryLSN, _ = currentLSN(ctx, p)
		}
	}
	wait := cfg.LagWait
	if wait == 0 {
		wait = max(cfg.MaxLag, 5*time.Second)
	}
	deadline := time.Now().Add(wait)
	for {
		lag, behind, err := replayLag(ctx, standby, primaryLSN)
		if err != nil {
			return 0, err
		}
		cfg.Log.Info("backing up from a standby", "server", standby.Addr, "replay_lag", lag.Round(time.Millisecond), "replay_behind_bytes", behind)
		if cfg.MaxLag == 0 || lag <= cfg.MaxLag {
			return lag, nil
		}
		if time.Now().After(deadline) {
			return lag, fmt.Errorf("%w: %s replays %s behind (%d bytes), more than --max-lag %s, after waiting %s",
				ErrStandbyLag, standby.Addr, lag.Round(time.Millisecond), behind, cfg.MaxLag, wait)
		}
		select {
		case <-ctx.Done():
			return lag, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// replayLag: 0 when the standby replayed up to target (the primary's
// position, or when unknown what it received); else the age of the last
// transaction it replayed.
func replayLag(ctx context.Context, standby *wal.Server, target pglogrepl.LSN) (time.Duration, uint64, error) {
	conn, err := pgconn.ConnectConfig(ctx, standby.Ordinary())
	if err != nil {
		return 0, 0, fmt.Errorf("connect to the standby: %w", err)
	}
	defer conn.Close(context.Background())
	res := conn.Exec(ctx, `SELECT pg_last_wal_replay_lsn()::text, coalesce(pg_last_wal_receive_lsn(), '0/0')::text,
		coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)::float8::text`)
	rs, err := res.ReadAll()
	if err != nil || len(rs) != 1 || len(rs[0].Rows) != 1 {
		return 0, 0, fmt.Errorf("read the standby's replay position: %v", err)
	}
	row := rs[0].Rows[0]
	replayed, err := pglogrepl.ParseLSN(string(row[0]))
	if err != nil {
		return 0, 0, fmt.Errorf("pg_last_wal_replay_lsn %q: %w", row[0], err)
	}
	if target == 0 {
		if target, err = pglogrepl.ParseLSN(string(row[1])); err != nil {
			return 0, 0, fmt.Errorf("pg_last_wal_receive_lsn %q: %w", row[1], err)
		}
	}
	if replayed >= target {
		return 0, 0, nil
	}
	var secs float64
	if _, err := fmt.Sscan(string(row[2]), &secs); err != nil {
		return 0, 0, fmt.Errorf("replay timestamp %q: %w", row[2], err)
	}
	return time.Duration(secs * float64(time.Second)), uint64(target - replayed), nil
}

func currentLSN(ctx context.Context, server *wal.Server) (pglogrepl.LSN, error) {
	conn, err := pgconn.ConnectConfig(ctx, server.Ordinary())
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	rs, err := conn.Exec(ctx, "SELECT pg_current_wal_lsn()::text").ReadAll()
	if err != nil || len(rs) != 1 || len(rs[0].Rows) != 1 {
		return 0, fmt.Errorf("pg_current_wal_lsn: %v", err)
	}
	return pglogrepl.ParseLSN(string(rs[0].Rows[0][0]))
}
