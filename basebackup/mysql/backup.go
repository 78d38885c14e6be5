// Package mysql takes consistent logical base backups of MariaDB servers
// into the repository's deduplicated chunk storage, and defines what a
// backup records (meta.go) and the typed row format of its table data
// (rows.go), which restore/mysql reads.
package mysql

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/binlog"
)

// Config configures a MySQL/MariaDB base backup.
type Config struct {
	Repo      *archive.Repository
	Source    string // mysql://user@host:port/
	Password  string // from a password file; else the URL's
	Jobs      int    // connections sharing the snapshot, and chunk workers
	Databases []string
	WithUsers bool
	// PartRows is the number of rows per primary-key range (default
	// 200,000): tables larger than that are dumped and loaded in parallel.
	// Ranges several times smaller than a big table keep every connection
	// busy to the end: with 1,000,000, a table of 1.5M rows was two parts
	// of 1M and 0.5M, and its restore on two connections took as long as
	// loading 1M rows on one.
	PartRows int64
	Log      *slog.Logger
	// Progress, when set, is called as rows are stored (bytes done, and the
	// server's estimate of the total).
	Progress func(done, total int64)
}

// Result summarises a committed MySQL backup.
type Result struct {
	Manifest *archive.Manifest
	Meta     Meta
}

// Backup takes a consistent logical base backup of a MariaDB server: a
// snapshot shared by cfg.Jobs connections at a known binlog position, the
// schema, and every table's rows by primary-key range in the typed row
// format, stored as deduplicated chunks; the manifest is written last.
func Backup(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Jobs < 1 {
		cfg.Jobs = 4
	}
	if cfg.PartRows <= 0 {
		cfg.PartRows = 200_000
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	srv, err := binlog.ParseSource(cfg.Source)
	if err != nil {
		return nil, err
	}
	if cfg.Password != "" {
		srv.Password = cfg.Password
	}
	coord, err := ConnectRaw(ctx, srv)
	if err != nil {
		return nil, err
	}
	defer coord.Close()
	// Definitions read in the canonical form, whatever the server default.
	if _, err := coord.Execute("SET SESSION sql_mode = ''"); err != nil {
		return nil, fmt.Errorf("set sql_mode: %w", err)
	}
	id, err := binlog.Identify(coord)
	if err != nil {
		return nil, err
	}
	if !id.LogBin && !id.Replica {
		return nil, fmt.Errorf("%w: binary logging is off on the source: set log_bin and binlog_format=ROW and restart it (a base backup without binlog coordinates cannot be rolled forward)",
			binlog.ErrUnsupported)
	}
	if !id.MariaDB {
		return nil, fmt.Errorf("base backups of MySQL (%s) are not implemented yet: only MariaDB's consistent-snapshot coordinates are supported", id.Version)
	}
	if _, err := binlog.Bind(ctx, cfg.Repo, id); err != nil {
		return nil, err
	}
	w, err := cfg.Repo.NewChunkWriter(ctx, cfg.Jobs)
	if err != nil {
		return nil, err
	}
	defer w.Abort() // packs still open after a failure leave nothing behind
	// Started, the snapshot's time and Finished stay in this order:
	// restore/mysql chooses a base by time from the catalog, which has
	// Started and Finished, and reads Meta.SnapshotTime only between them.
	started := time.Now().UTC()
	snap, schema, err := openSnapshot(ctx, cfg, srv, coord, id)
	if err != nil {
		return nil, err
	}
	defer snap.close()
	defer snap.release(coord)
	cfg.Log.Info("snapshot open", "binlog_file", snap.file, "binlog_pos", snap.pos, "gtid", snap.gtid, "replica_of_gtid", snap.primaryGTID,
		"connections", len(snap.workers), "non_transactional_tables_under_lock", schema.hasLocked())
	d := &dumper{cfg: cfg, chunks: w, snap: snap}
	files, err := d.run(ctx, coord, schema)
	if err != nil {
		return nil, err
	}
	cfg.Log.Info("tables copied", "commits_blocked", snap.lockHeld, "ddl_blocked", snap.ddlBlocked)
	sj, err := json.Marshal(schema)
	if err != nil {
		return nil, err
	}
	refs, err := w.WriteFile(ctx, bytes.NewReader(sj), archive.ContentDefined)
	if err != nil {
		return nil, fmt.Errorf("store schema: %w", err)
	}
	files = append([]archive.FileEntry{{Path: SchemaFile, Size: int64(len(sj)), Mode: 0o600, ModTime: snap.taken, Chunks: refs}}, files...)
	meta := Meta{ServerVersion: id.Version, ServerID: id.ServerID, ClusterID: id.ClusterID, BinlogFile: snap.file,
		BinlogPos: snap.pos, GTID: snap.gtid, SnapshotTime: snap.taken, LockHeldMS: ms(snap.lockHeld), DDLBlockedMS: ms(snap.ddlBlocked),
		RowFormat: RowVersion, WithUsers: cfg.WithUsers}
	if id.Replica {
		// The replica's own files are not the cluster's stream: the base
		// is entered by GTID in whichever stream holds it.
		meta.Replica = &ReplicaSnapshot{BinlogFile: snap.file, BinlogPos: snap.pos, GTID: snap.gtid}
		meta.BinlogFile, meta.BinlogPos, meta.GTID = "", 0, snap.primaryGTID
	}
	for _, db := range schema.Databases {
		meta.Databases = append(meta.Databases, db.Name)
		meta.Tables += len(db.Tables)
		for _, t := range db.Tables {
			meta.Rows += t.Rows
			if t.Locked {
				meta.LockedTables++
			}
		}
	}
	if err := w.Commit(ctx); err != nil {
		return nil, err
	}
	em, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	// A logical snapshot is consistent at one point: a restore replays the
	// binlog from there, so Start and Stop are the same position.
	pos := meta.Position().String()
	stream := id.Stream
	if id.Replica {
		// The stream holding the position; "" (paired with every binlog
		// stream) while the streamer has not archived it yet.
		if stream, err = binlog.StreamHolding(ctx, cfg.Repo, meta.Position()); err != nil {
			return nil, err
		}
	}
	m := &archive.Manifest{ID: archive.NewManifestID(started), Engine: "mysql", Type: "full", Started: started,
		Finished: time.Now().UTC(), Start: pos, Stop: pos, Stream: stream, Files: files, Stats: w.Stats(), EngineMeta: em}
	if err := cfg.Repo.CommitManifest(ctx, m); err != nil {
		return nil, err
	}
	return &Result{Manifest: m, Meta: meta}, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
