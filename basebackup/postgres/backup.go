// Package postgres takes PostgreSQL base backups over the replication
// protocol (BASE_BACKUP) into the repository's deduplicated chunk storage,
// and defines what a backup records of the cluster (meta.go).
package postgres

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/basebackup"
	"github.com/tidemark/tidemark/wal"
)

var slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// Config configures a PostgreSQL base backup.
type Config struct {
	Repo   *archive.Repository
	Source string // postgres:// URL (password from ~/.pgpass, PGPASSFILE, PGPASSWORD)
	Slot   string // the streamer's slot: held before the backup so its WAL stays
	Type   string // full, incremental, differential (see docs: all deduplicated; block-level on 17+)
	// FallbackFull takes a full backup when an incremental or differential
	// one cannot be taken (WAL summaries off, no reference), instead of failing.
	FallbackFull   bool
	FastCheckpoint bool
	Jobs           int
	Log            *slog.Logger
	// Progress, when set, is called as data arrives (done and total bytes).
	Progress func(done, total int64)
	// WALTimeout bounds the wait for a running streamer to archive the
	// backup's WAL.
	WALTimeout time.Duration
}

// Result summarises a committed backup.
type Result struct {
	Manifest *archive.Manifest
	Meta     Meta
}

// Backup takes a base backup over the replication protocol and commits it
// to the repository once the WAL it needs is archived.
func Backup(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Jobs < 1 {
		cfg.Jobs = 4
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.WALTimeout == 0 {
		cfg.WALTimeout = 5 * time.Minute
	}
	if !slotName.MatchString(cfg.Slot) {
		return nil, fmt.Errorf("slot name %q: want 1-63 of a-z, 0-9, _", cfg.Slot)
	}
	pcfg, err := pgconn.ParseConfig(withReplication(cfg.Source))
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	// The backup arrives as ~32 KiB messages; reading the socket 1 MiB at a
	// time instead of pgproto3's 8 KiB saves most of the read syscalls.
	pcfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return pgproto3.NewFrontend(bufio.NewReaderSize(r, 1<<20), w)
	}
	conn, err := pgconn.ConnectConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	src, err := wal.Identify(ctx, conn, cfg.Repo)
	if err != nil {
		return nil, err
	}
	if err := holdWAL(ctx, conn, cfg, src.Version); err != nil {
		return nil, err
	}
	ref, err := prepareIncremental(ctx, conn, &cfg, src.Version)
	if err != nil {
		return nil, err
	}
	if ref != nil {
		cfg.Log.Debug("reference manifest uploaded", "reference", ref.id, "bytes", len(ref.manifest))
	}
	w, err := cfg.Repo.NewChunkWriter(ctx, cfg.Jobs)
	if err != nil {
		return nil, err
	}
	defer w.Abort() // packs still open after a failure leave nothing behind
	started := time.Now().UTC()
	label := "tidemark " + archive.NewManifestID(started)
	bb := &baseBackup{cfg: cfg, conn: conn, chunks: w, version: src.Version, incremental: ref != nil}
	meta, files, err := bb.run(ctx, label)
	var pgErr *pgconn.PgError
	if ref != nil && errors.As(err, &pgErr) && bb.done == 0 {
		// The server refused the incremental before sending anything
		// (say, WAL summaries do not reach back to the reference).
		err = fmt.Errorf("%w: incremental backup against %s: %w", ErrNoIncremental, ref.id, err)
		if cfg.FallbackFull {
			cfg.Log.Warn("taking a full backup instead", "reason", err)
			if ferr := bb.finish(ctx); ferr != nil {
				return nil, fmt.Errorf("after the refused incremental: %w", ferr)
			}
			ref, cfg.Type, bb.incremental, bb.cfg.Type = nil, "full", false, "full"
			meta, files, err = bb.run(ctx, label)
		}
	}
	if err != nil {
		return nil, err
	}
	var dependsOn []string
	if ref != nil {
		if meta.BlockSize, err = blockSize(ctx, conn); err != nil {
			return nil, err
		}
		meta.IncrementalFrom, dependsOn = ref.id, []string{ref.id}
	}
	meta.SystemID, meta.Label, meta.WALSegmentSize = src.SystemID, label, src.Geometry.SegSize
	meta.ServerVersion = conn.ParameterStatus("server_version")
	meta.Received = bb.done
	if err := w.Commit(ctx); err != nil {
		return nil, err
	}
	startLSN, _ := pglogrepl.ParseLSN(meta.StartLSN)
	stopLSN, _ := pglogrepl.ParseLSN(meta.StopLSN)
	by, err := ensureWAL(ctx, cfg, src.Geometry, meta.StopTimeline, startLSN, stopLSN)
	if err != nil {
		return nil, fmt.Errorf("backup taken but not restorable: the WAL up to %s is not archived: %w", meta.StopLSN, err)
	}
	meta.WALArchivedBy = by
	em, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	m := &archive.Manifest{ID: archive.NewManifestID(started), Engine: "postgres", Type: cfg.Type,
		Started: started, Finished: time.Now().UTC(), Start: meta.StartLSN, Stop: meta.StopLSN, DependsOn: dependsOn, Files: files, Stats: w.Stats(), EngineMeta: em}
	if err := cfg.Repo.CommitManifest(ctx, m); err != nil {
		return nil, err
	}
	return &Result{Manifest: m, Meta: meta}, nil
}

func withReplication(source string) string {
	sep := "?"
	if strings.Contains(source, "?") {
		sep = "&"
	}
	return source + sep + "replication=true&application_name=tidemark_backup"
}

// holdWAL makes sure the streamer's slot exists before the backup starts, so
// the server keeps the WAL from the backup's start LSN until it is archived.
func holdWAL(ctx context.Context, conn *pgconn.PgConn, cfg Config, v wal.Version) error {
	slot, err := wal.ReadSlot(ctx, conn, v, cfg.Source, cfg.Slot)
	if err != nil {
		return err
	}
	if slot.Exists {
		return nil
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE_REPLICATION_SLOT %s PHYSICAL RESERVE_WAL", cfg.Slot)).ReadAll(); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42710" {
			return nil // a streamer created it meanwhile
		}
		return fmt.Errorf("create replication slot %s: %w", cfg.Slot, err)
	}
	cfg.Log.Info("created physical replication slot to hold the backup's WAL; run `tidemark stream` with it", "slot", cfg.Slot)
	return nil
}

// ensureWAL waits until the repository holds the WAL up to stop on tli:
// from a running streamer (its slot is active), or by streaming that range
// itself. It says which.
func ensureWAL(ctx context.Context, cfg Config, g wal.Geometry, tli uint32, start, stop pglogrepl.LSN) (string, error) {
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
		return "streamer", err
	}
	active, err := slotActive(ctx, cfg)
	if err != nil {
		return "", err
	}
	if active {
		cfg.Log.Info("waiting for the running streamer to archive the backup's WAL", "stop_lsn", stop)
		if ok, err := basebackup.AwaitStreamer(ctx, cfg.WALTimeout, reached); ok || err != nil {
			return "streamer", err
		}
		return "", fmt.Errorf("the streamer on slot %s did not archive up to %s within %s", cfg.Slot, stop, cfg.WALTimeout)
	}
	cfg.Log.Info("no streamer is running: archiving the backup's WAL range itself", "stop_lsn", stop)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var got bool
	err = wal.Stream(sctx, wal.Config{Repo: cfg.Repo, Source: cfg.Source, Slot: cfg.Slot, FlushInterval: 200 * time.Millisecond, StartAt: start,
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

// slotActive reports whether a streamer is connected on the slot.
func slotActive(ctx context.Context, cfg Config) (bool, error) {
	conn, err := pgconn.Connect(ctx, cfg.Source)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	res, err := conn.Exec(ctx, fmt.Sprintf("SELECT active FROM pg_replication_slots WHERE slot_name = '%s'", cfg.Slot)).ReadAll()
	if err != nil {
		return false, fmt.Errorf("read slot %s: %w", cfg.Slot, err)
	}
	return len(res) == 1 && len(res[0].Rows) == 1 && string(res[0].Rows[0][0]) == "t", nil
}
