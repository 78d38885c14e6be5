package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/wal"
)

// Block-level incremental backups (PostgreSQL 17+): the previous backup's
// backup_manifest, which the repository holds, is uploaded with
// UPLOAD_MANIFEST, and BASE_BACKUP (INCREMENTAL) then sends relation files
// as INCREMENTAL.<name> files holding only the blocks the WAL summaries
// say changed since. They are stored as they come; restore/postgres
// rebuilds the full files from the chain of references.

// ErrNoIncremental: an incremental backup was asked for and cannot be
// taken (WAL summaries off, no usable reference).
var ErrNoIncremental = archive.Class(archive.ErrMisconfigured, "no incremental backup possible")

// reference is the backup an incremental is taken against.
type reference struct {
	id       string
	manifest []byte // its PostgreSQL backup_manifest
}

// ManifestFile is where a backup keeps PostgreSQL's backup_manifest.
const ManifestFile = "backup_manifest"

// IncrementalPrefix starts the name of a relation file a PostgreSQL 17
// incremental backup sent as changed blocks only.
const IncrementalPrefix = "INCREMENTAL."

// prepareIncremental decides whether this backup is block-level
// incremental and, if so, uploads its reference's manifest. nil: take a
// full backup (asked for, a server before 17, or a fallback the user
// allowed).
func prepareIncremental(ctx context.Context, conn *pgconn.PgConn, cfg *Config, v wal.Version) (*reference, error) {
	if (cfg.Type != "incremental" && cfg.Type != "differential") || !v.HasIncremental() {
		return nil, nil
	}
	ref, why, err := findReference(ctx, conn, *cfg)
	if err != nil {
		return nil, err
	}
	if why != "" {
		if cfg.FallbackFull {
			cfg.Log.Warn("taking a full backup instead of an "+cfg.Type+" one", "reason", why)
			cfg.Type = "full"
			return nil, nil
		}
		return nil, fmt.Errorf("%w: %s (or pass --fallback-full to take a full backup then)", ErrNoIncremental, why)
	}
	if _, err := conn.CopyFrom(ctx, bytes.NewReader(ref.manifest), "UPLOAD_MANIFEST"); err != nil {
		return nil, fmt.Errorf("UPLOAD_MANIFEST of backup %s: %w", ref.id, err)
	}
	return ref, nil
}

// findReference finds the backup to take an incremental against: the
// newest PostgreSQL backup (for a differential, the newest full one). why
// says, when there is none usable, what the user can do about it.
func findReference(ctx context.Context, conn *pgconn.PgConn, cfg Config) (ref *reference, why string, err error) {
	res, err := conn.Exec(ctx, "SHOW summarize_wal").ReadAll()
	if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
		return nil, "", fmt.Errorf("SHOW summarize_wal: %v", err)
	}
	if string(res[0].Rows[0][0]) != "on" {
		return nil, "summarize_wal is off on the server: block-level incremental backups need WAL summaries " +
			"(ALTER SYSTEM SET summarize_wal = on; SELECT pg_reload_conf(); then take a full backup to start from)", nil
	}
	backups, err := cfg.Repo.Backups(ctx)
	if err != nil {
		return nil, "", err
	}
	// The newest by finish time: ids order backups only to the second.
	var chosen *archive.BackupSummary
	for i := range backups {
		b := &backups[i]
		if b.Engine == "postgres" && (cfg.Type == "incremental" || len(b.DependsOn) == 0) &&
			(chosen == nil || b.Finished.After(chosen.Finished)) {
			chosen = b
		}
	}
	if chosen == nil {
		return nil, "the repository holds no earlier backup of this cluster to take it against", nil
	}
	if !cfg.Repo.CanRead() {
		return nil, fmt.Sprintf("reading the reference backup %s's manifest needs the repository's identity (--identity-file)", chosen.ID), nil
	}
	m, err := cfg.Repo.ReadManifest(ctx, chosen.ID)
	if err != nil {
		return nil, "", fmt.Errorf("read reference backup %s: %w", chosen.ID, err)
	}
	var meta Meta
	if err := json.Unmarshal(m.EngineMeta, &meta); err != nil {
		return nil, "", fmt.Errorf("reference backup %s: %w: engine metadata: %v", chosen.ID, archive.ErrCorrupt, err)
	}
	if v, err := wal.ParseVersion(meta.ServerVersion); err != nil || !v.HasIncremental() {
		return nil, fmt.Sprintf("the newest backup, %s, was taken from PostgreSQL %s, whose manifest an incremental cannot refer to", chosen.ID, meta.ServerVersion), nil
	}
	for _, f := range m.Files {
		if f.Path != ManifestFile {
			continue
		}
		var buf bytes.Buffer
		if err := cfg.Repo.ReadChunks(ctx, f.Chunks, &buf, 4); err != nil {
			return nil, "", fmt.Errorf("read backup_manifest of reference backup %s: %w", chosen.ID, err)
		}
		return &reference{id: chosen.ID, manifest: buf.Bytes()}, "", nil
	}
	return nil, "", fmt.Errorf("reference backup %s: %w: it holds no backup_manifest", chosen.ID, archive.ErrCorrupt)
}

// blockSize reads the server's block size (BLCKSZ), which incremental
// files are made of.
func blockSize(ctx context.Context, conn *pgconn.PgConn) (int, error) {
	res, err := conn.Exec(ctx, "SHOW block_size").ReadAll()
	if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
		return 0, fmt.Errorf("SHOW block_size: %v", err)
	}
	n, err := strconv.Atoi(string(res[0].Rows[0][0]))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("block_size %q: %w", res[0].Rows[0][0], errors.Join(err, archive.ErrCorrupt))
	}
	return n, nil
}
