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
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/wal"
)

var slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// Config configures a PostgreSQL base backup.
type Config struct {
	Repo   *archive.Repository
	Source string // postgres:// URL (password from ~/.pgpass, PGPASSFILE, PGPASSWORD)
	// Slot, when set, is a streamer's slot: a backup that finds it active
	// on the server relies on that streamer (else the streamer is found by
	// its heartbeat in the repository).
	Slot string
	Type string // full, incremental, differential (see docs: all deduplicated; block-level on 17+)
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
	// FromStandby takes the backup from a standby of the source (a hot
	// standby: the source's hosts are resolved with target_session_attrs
	// standby); a source that resolves to a standby is backed up from it
	// anyway. MaxLag refuses a standby whose replay lags more than that,
	// after waiting LagWait for it to catch up (0: MaxLag, at least 5s).
	FromStandby     bool
	MaxLag, LagWait time.Duration
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
	if cfg.Slot != "" && !slotName.MatchString(cfg.Slot) {
		return nil, fmt.Errorf("slot name %q: want 1-63 of a-z, 0-9, _", cfg.Slot)
	}
	attrs := ""
	if cfg.FromStandby {
		attrs = wal.AttrsStandby
	}
	server, err := wal.Resolve(ctx, cfg.Source, attrs)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	pcfg := server.Replication("tidemark_backup")
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
	server.Standby = server.StandbyOf(conn)
	var lag time.Duration
	if server.Standby {
		if lag, err = awaitReplay(ctx, cfg, server); err != nil {
			return nil, err
		}
	}
	hold, err := holdWAL(ctx, conn, cfg, server)
	if err != nil {
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
	by, err := ensureWAL(ctx, cfg, hold, src.Geometry, meta.StopTimeline, startLSN, stopLSN)
	if err != nil {
		return nil, fmt.Errorf("backup taken but not restorable: the WAL up to %s is not archived: %w", meta.StopLSN, err)
	}
	hold.release(ctx, conn, cfg)
	meta.WALArchivedBy, meta.Server, meta.FromStandby = by, server.Addr, server.Standby
	if server.Standby {
		meta.StandbyLag = lag.Seconds()
	}
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
