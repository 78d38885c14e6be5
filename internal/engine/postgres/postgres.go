// Package postgres is the PostgreSQL engine: WAL streamed from a physical
// replication slot (package wal), base backups by BASE_BACKUP
// (basebackup/postgres), restores of a data directory that PostgreSQL's
// own recovery rolls forward through `tidemark wal-fetch`
// (restore/postgres).
package postgres

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tidemark/tidemark/basebackup"
	pgbackup "github.com/tidemark/tidemark/basebackup/postgres"
	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/progress"
	"github.com/tidemark/tidemark/wal"
)

// Engine is PostgreSQL.
type Engine struct{}

// New returns the PostgreSQL engine.
func New() *Engine { return &Engine{} }

// Info implements engine.Engine.
func (*Engine) Info() engine.Info {
	return engine.Info{Name: "postgres", Title: "PostgreSQL", Stream: "WAL", Schemes: []string{"postgres", "postgresql"},
		StreamLock: "stream-wal", Credentials: "~/.pgpass, PGPASSFILE or PGPASSWORD", RestoreTarget: "target-dir"}
}

// defaultSlot is the replication slot a streamer uses unless told.
const defaultSlot = "tidemark"

// Flags implements engine.Engine.
func (*Engine) Flags(cmd engine.Command, d *engine.Declarer) {
	switch cmd {
	case engine.CmdStream:
		d.String("slot", defaultSlot, "physical replication slot name")
		d.Bool("create-slot", false, "create the slot if it does not exist")
		d.Bool("no-slot", false, "stream without a slot (the server may recycle WAL before it is archived: gaps possible)")
		d.Bool("synchronous", false, "report flush as soon as WAL is durable, for use as a synchronous standby (RPO 0)")
	case engine.CmdBackup:
		d.Bool("fast-checkpoint", false, "request an immediate checkpoint instead of a spread one")
		d.String("slot", "", "a streamer's replication slot to rely on when it is active (default: the running streamer is found by its heartbeat in the repository; a temporary slot holds the backup's WAL either way)")
		d.Bool("from-standby", false, "take the backup from a standby of the source (the source's hosts are resolved with target_session_attrs=standby; a source that resolves to a standby is backed up from it anyway)")
		d.Duration("max-lag", 0, "from a standby: wait for its replay lag to come within this, and refuse the backup if it does not (0: no limit, the lag is only reported)")
		d.Bool("fallback-full", false, "PostgreSQL 17+: take a full backup when an incremental or differential one cannot be taken (summarize_wal off, no earlier backup) instead of failing")
	case engine.CmdRestore:
		d.String("target-dir", "", "empty directory to restore the data directory into")
		d.String("to-lsn", "", "restore to this LSN")
		d.String("to-xid", "", "restore to this transaction id")
		d.String("to-name", "", "restore to this named restore point")
		d.String("timeline", "latest", "timeline to follow (number or latest)")
		d.Bool("start", false, "start the restored server, wait until it reached the target and promoted, and report where it stopped")
		d.String("run-as", "", "when running as root: the OS user the restored server runs as, given the data directory (default postgres)")
		d.Int("port", 5433, "port for --start")
		d.String("pg-bindir", "", "server binaries for --start (default: the backup's major version's, or pg_config --bindir)")
		d.Duration("start-timeout", 0, "how long --start waits for recovery (default 1h)")
		d.Bool("delta", false, "reuse an existing data directory, fetching only chunks that differ (the server must be stopped)")
		d.Bool("exclusive", false, "stop just before the target instead of just after it")
		d.StringArray("tablespace-map", "restore a tablespace elsewhere, OID=/new/dir or /old/dir=/new/dir (repeatable)")
	case engine.CmdDrill:
		d.String("run-as", "", "when running as root: the OS user the scratch server runs as (default postgres)")
		d.String("workdir", "", "where the scratch directory goes (default: the temp dir)")
		d.String("pg-bindir", "", "server binaries (default: found from the backup's version)")
		d.String("db-user", "postgres", "database superuser the checks connect as")
	}
}

// Help implements engine.Engine.
func (*Engine) Help(cmd engine.Command) string {
	switch cmd {
	case engine.CmdStream:
		return `PostgreSQL (postgres://): WAL from a physical replication slot, reported to
the server as flushed only once durable in the repository. A source naming
several hosts (postgres://u@p1:5432,p2:5432/postgres?target_session_attrs=primary)
is resolved over an ordinary connection before each session, so after a
failover the streamer follows the promoted server (with --create-slot it
creates its slot there) and archives the timeline switch.`
	case engine.CmdBackup:
		return `PostgreSQL: BASE_BACKUP over the replication protocol; each tablespace's tar
streams straight into deduplicated, compressed, encrypted chunks (never
staged on local disk); the manifest is written last, and only once the WAL
from the backup's start to its stop is archived — by the running
'tidemark stream' (found by its heartbeat in the repository, whatever its
slot), or by the backup itself when no streamer runs; a temporary slot,
which the server drops when the backup ends, holds that WAL meanwhile. A multi-host source
is resolved by its target_session_attrs; on a standby (--from-standby, or
the source resolves to one) the backup reports the standby's replay lag
and with --max-lag waits for it to come within it, or refuses. Every backup stores only the chunks the repository does not
hold yet. --type incremental on PostgreSQL 17+ (summarize_wal = on) is
block-level: the previous backup's manifest, read from the repository (this
needs --identity-file), is uploaded and the server sends only the blocks
changed since (differential: since the newest full backup); a restore
rebuilds the files from the chain, and expire keeps every backup a kept one
depends on. Without summaries or an earlier backup it fails, unless
--fallback-full. On 13 to 16, and for --type full, the server sends the whole
cluster and deduplication saves the storage, not the reading; full backups
restore on their own.`
	case engine.CmdRestore:
		return `PostgreSQL (--target-dir DIR): the data directory is written (every worker
on any chunk of any file), recovery is configured (recovery.signal,
restore_command calling 'tidemark wal-fetch' with the repository and key
file paths — never a key inline — the target, and promote); start
PostgreSQL on it to replay, or pass --start. Targets: --to-time, --latest,
--to-lsn, --to-xid, --to-name.
restore_command runs as the server's OS user (as root: --run-as, default
postgres, who is given the data directory). Before anything is written,
restore checks as that user that it can run tidemark and read the
repository and key file; when the user cannot reach tidemark or the key
file, copies go into DIR.tidemark beside the data directory (keep it while
the server recovers); a repository it cannot read is refused.`
	case engine.CmdDrill:
		return `PostgreSQL: restore into a scratch directory, start a throwaway server on a
free port (local socket only), recover to the target, then check every
B-tree index with amcheck and count every table's rows in every database.
PostgreSQL does not run as root: as root, the scratch server runs as
--run-as (default postgres), which must be able to read the repository,
since recovery fetches WAL with tidemark wal-fetch as that user (tidemark and
the key file are copied into the scratch directory when it cannot reach them).`
	}
	return ""
}

// Check implements engine.Engine.
func (*Engine) Check(cmd engine.Command, o engine.Options) error {
	switch cmd {
	case engine.CmdStream:
		if o.Bool("no-slot") && o.Bool("create-slot") {
			return fmt.Errorf("--no-slot and --create-slot contradict each other")
		}
	case engine.CmdBackup:
		if o.Duration("max-lag") < 0 {
			return fmt.Errorf("--max-lag must not be negative")
		}
	case engine.CmdRestore:
		if o.String("target-dir") == "" {
			return fmt.Errorf("a PostgreSQL restore needs --target-dir: the directory to write the data directory into")
		}
		if _, err := tablespaceMap(o.Strings("tablespace-map")); err != nil {
			return err
		}
		if o.String("run-as") != "" && os.Geteuid() != 0 {
			return fmt.Errorf("--run-as needs root: without it the restored server runs as you")
		}
		if name := o.String("run-as"); name != "" {
			if _, err := serverUser(name); err != nil {
				return err // a misspelt user is refused before anything is read
			}
		}
	}
	return nil
}

func tablespaceMap(flags []string) (map[string]string, error) {
	m := map[string]string{}
	for _, f := range flags {
		old, dir, ok := strings.Cut(f, "=")
		if !ok || old == "" || !filepath.IsAbs(dir) {
			return nil, fmt.Errorf("--tablespace-map %q: want OID=/new/dir or /old/dir=/new/dir", f)
		}
		m[old] = dir
	}
	return m, nil
}

// Stream implements engine.Engine.
func (*Engine) Stream(ctx context.Context, job engine.StreamJob) error {
	o := job.Options
	cfg := wal.Config{Repo: job.Repo, Source: job.Source, Slot: o.String("slot"), CreateSlot: o.Bool("create-slot"),
		NoSlot: o.Bool("no-slot"), Synchronous: o.Bool("synchronous"), FlushInterval: job.FlushInterval, Log: job.Log,
		Observe: job.Observe}
	if cfg.Slot == "" {
		cfg.Slot = defaultSlot
	}
	if cfg.NoSlot {
		cfg.Slot = ""
	}
	if job.Durable != nil {
		cfg.Progress = func(p wal.Progress) {
			job.Durable(engine.StreamProgress{Durable: uint64(p.Durable), ServerEnd: uint64(p.ServerEnd),
				Server: p.Server, Slot: p.Slot, Position: p.Durable.String(), Timeline: p.TLI})
		}
	}
	return wal.Stream(ctx, cfg)
}

// Backup implements engine.Engine.
func (*Engine) Backup(ctx context.Context, job engine.BackupJob) (*engine.BackupReport, error) {
	o := job.Options
	res, err := pgbackup.Backup(ctx, pgbackup.Config{Repo: job.Repo, Source: job.Source, Slot: o.String("slot"), Type: job.Type, FallbackFull: o.Bool("fallback-full"),
		FromStandby: o.Bool("from-standby"), MaxLag: o.Duration("max-lag"),
		FastCheckpoint: o.Bool("fast-checkpoint"), Jobs: job.Jobs, Log: job.Log,
		Progress: func(done, total int64) {
			job.Report(engine.Step{Phase: "backup", Unit: "bytes", Done: done, Total: total})
		}})
	if err != nil {
		return nil, err
	}
	meta := res.Meta
	rep := &engine.BackupReport{Manifest: res.Manifest, Start: meta.StartLSN, Stop: meta.StopLSN,
		Lines: []string{
			fmt.Sprintf("WAL %s – %s on timeline %d, %s", meta.StartLSN, meta.StopLSN, meta.StopTimeline, basebackup.ArchivedBy(meta.WALArchivedBy)),
		},
		Detail: map[string]any{"start_lsn": meta.StartLSN, "stop_lsn": meta.StopLSN, "timeline": meta.StopTimeline,
			"server_version": meta.ServerVersion, "wal_archived_by": meta.WALArchivedBy, "server": meta.Server}}
	if meta.FromStandby {
		rep.Lines = append(rep.Lines, fmt.Sprintf("taken from the standby %s (replay lag %.1fs as it began)", meta.Server, meta.StandbyLag))
		rep.Detail["from_standby"], rep.Detail["standby_replay_lag_seconds"] = true, meta.StandbyLag
	}
	if meta.IncrementalFrom != "" {
		rep.Lines = append(rep.Lines, fmt.Sprintf("block-level incremental against backup %s: %s received from the server",
			meta.IncrementalFrom, progress.FormatBytes(meta.Received)))
		rep.Detail["incremental_from"] = meta.IncrementalFrom
	}
	rep.Detail["received_bytes"] = meta.Received
	return rep, nil
}
