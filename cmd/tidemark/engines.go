package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	pgbackup "github.com/tidemark/tidemark/basebackup/postgres"
	"github.com/tidemark/tidemark/restore"
	pgrestore "github.com/tidemark/tidemark/restore/postgres"
	"github.com/tidemark/tidemark/wal"
)

// Engines, named by the scheme of a source or target URL.
const (
	enginePostgres = "postgres"
	engineMySQL    = "mysql"
	engineMongoDB  = "mongodb"
)

// engineOf names the engine of a source/target URL and refuses passwords in
// it: a password in a URL on the command line is visible to every user of
// the host through the process list.
func engineOf(flag, raw string) (string, error) {
	if raw == "" {
		return "", usageErr(fmt.Errorf("--%s is required", flag))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", usageErr(fmt.Errorf("--%s: %w", flag, err))
	}
	// From the environment a password is not visible to other users.
	if _, set := u.User.Password(); set && os.Getenv("TIDEMARK_"+envName(flag)) != raw {
		return "", usageErr(fmt.Errorf("--%s: passwords do not belong in URLs on the command line; use ~/.pgpass or PGPASSFILE (PostgreSQL), a password file, or set TIDEMARK_%s in the environment", flag, envName(flag)))
	}
	switch u.Scheme {
	case "postgres", "postgresql":
		return enginePostgres, nil
	case "mysql", "mariadb":
		return engineMySQL, nil
	case "mongodb", "mongodb+srv":
		return engineMongoDB, nil
	default:
		return "", usageErr(fmt.Errorf("--%s %q: unsupported scheme %q (postgres://, postgresql://, mysql://, mongodb://)", flag, u.Redacted(), u.Scheme))
	}
}

func notYet(what, issue string) error {
	return fmt.Errorf("%s: %w (tracked in issue %s)", what, errNotImplemented, issue)
}

func (a *app) streamCmd() *cobra.Command {
	var (
		rf            repoFlags
		source        string
		slot          string
		createSlot    bool
		noSlot        bool
		synchronous   bool
		flushInterval time.Duration
		serverID      uint32
		my            mysqlFlags
	)
	cmd := &cobra.Command{
		Use:   "stream --repo URL --source URL",
		Short: "Continuously archive a database's change stream (WAL, binlog, oplog)",
		Long: `Stream changes from the source over its own replication protocol into the
repository, acknowledging to the server only what is durable in the
repository. Runs until interrupted; SIGINT/SIGTERM flush and exit cleanly.

  postgres://   WAL from a physical replication slot
  mysql://      binlog events, registered as a replica
  mongodb://    the oplog (local.oplog.rs), majority-committed entries only;
                a rolled-over oplog is recorded as a gap (exit 6). FerretDB
                (with a capped local.oplog.rs) is supported as a flavour.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			eng, err := engineOf("source", source)
			if err != nil {
				return err
			}
			if rf.repo == "" {
				return usageErr(fmt.Errorf("--repo (or TIDEMARK_REPO) is required"))
			}
			if flushInterval <= 0 {
				return usageErr(fmt.Errorf("--flush-interval must be positive"))
			}
			switch eng {
			case enginePostgres:
				return a.streamPostgres(cmd.Context(), &rf, wal.Config{Source: source, Slot: slot, CreateSlot: createSlot,
					NoSlot: noSlot, Synchronous: synchronous, FlushInterval: flushInterval})
			case engineMySQL:
				pw, err := my.password()
				if err != nil {
					return err
				}
				return a.streamMySQL(cmd.Context(), &rf, source, pw, serverID, flushInterval, nil)
			default:
				return a.streamMongo(cmd.Context(), &rf, source, flushInterval, nil)
			}
		},
	}
	rf.register(cmd, false)
	f := cmd.Flags()
	f.StringVar(&source, "source", "", "database to stream from: postgres://, mysql:// or mongodb:// URL (no password: use ~/.pgpass, PGPASSFILE or the environment)")
	f.StringVar(&slot, "slot", "tidemark", "PostgreSQL: physical replication slot name")
	f.BoolVar(&createSlot, "create-slot", false, "PostgreSQL: create the slot if it does not exist")
	f.BoolVar(&noSlot, "no-slot", false, "PostgreSQL: stream without a slot (the server may recycle WAL before it is archived: gaps possible)")
	f.BoolVar(&synchronous, "synchronous", false, "PostgreSQL: report flush as soon as WAL is durable, for use as a synchronous standby (RPO 0)")
	f.DurationVar(&flushInterval, "flush-interval", time.Second, "make arrived data durable in the repository at least this often")
	f.Uint32Var(&serverID, "server-id", 0, "MySQL/MariaDB: replica server id (default derived from the repository id)")
	my.registerPassword(f)
	return cmd
}

func (a *app) backupCmd() *cobra.Command {
	var (
		rf             repoFlags
		source         string
		typ            string
		fastCheckpoint bool
		jobs           int
		asJSON         bool
		slot           string
		my             mysqlFlags
	)
	cmd := &cobra.Command{
		Use: "backup --repo URL --source URL",
		Long: `Take a base backup into the repository.

PostgreSQL: BASE_BACKUP over the replication protocol; each tablespace's tar
streams straight into deduplicated, compressed, encrypted chunks (never
staged on local disk); the manifest is written last, and only once the WAL
from the backup's start to its stop is archived — by the running
'tidemark stream' on the same slot, or by the backup itself when no
streamer runs. Every backup restores on its own (no chains).

--type: every backup stores only the chunks the repository does not hold
yet, so in storage terms every type is incremental against everything in
the repository. PostgreSQL 15 and 16 send the whole cluster for every
type; the type is recorded in the manifest for your retention policy.

MySQL/MariaDB: a logical backup from one consistent snapshot shared by
--jobs connections (commits are blocked only while they open it), with the
binlog position and GTID it is consistent with; schema (tables by exact
SHOW CREATE, views, routines, triggers, events, --with-users accounts) and
rows by primary-key range in a typed binary format, as deduplicated,
compressed, encrypted chunks. Non-transactional tables (MyISAM, Aria) are
copied while commits stay blocked.

MongoDB: the oplog position before, every collection scanned in parallel
(raw BSON documents, options, indexes, views), the position after; the
manifest is committed once the oplog between them is archived (by the
running streamer, or by the backup itself).`,

		Short: "Take a base backup into the repository",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			eng, err := engineOf("source", source)
			if err != nil {
				return err
			}
			switch typ {
			case "full", "incremental", "differential":
			default:
				return usageErr(fmt.Errorf("--type %q: want full, incremental or differential", typ))
			}
			if jobs < 1 {
				return usageErr(fmt.Errorf("--jobs must be at least 1"))
			}
			switch eng {
			case enginePostgres:
				return a.backupPostgres(cmd.Context(), &rf, pgbackup.Config{Source: source, Slot: slot,
					Type: typ, FastCheckpoint: fastCheckpoint, Jobs: jobs}, asJSON)
			case engineMySQL:
				return a.backupMySQL(cmd.Context(), &rf, source, jobs, my, asJSON)
			default:
				return a.backupMongo(cmd.Context(), &rf, source, typ, jobs, asJSON)
			}
		},
	}
	rf.register(cmd, false)
	f := cmd.Flags()
	f.StringVar(&source, "source", "", "database to back up (postgres://, mysql://, mongodb://)")
	f.StringVar(&typ, "type", "full", "full, incremental or differential")
	f.BoolVar(&fastCheckpoint, "fast-checkpoint", false, "PostgreSQL: request an immediate checkpoint instead of a spread one")
	f.StringVar(&slot, "slot", "tidemark", "PostgreSQL: the streamer's replication slot (created if missing, to hold the backup's WAL)")
	f.IntVar(&jobs, "jobs", 4, "parallel compress/encrypt/upload workers (MySQL: also connections sharing the snapshot)")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	my.registerBackup(f)
	return cmd
}

func (a *app) restoreCmd() *cobra.Command {
	var (
		rf                                    repoFlags
		toTime, toLSN, toXID, toName, toGTID  string
		toPosition, toTS, timeline, targetDir string
		target                                string
		latest                                bool
		jobs                                  int
		tablespaceMap                         []string
		delta, exclusive, start               bool
		port                                  int
		pgBinDir                              string
		startTimeout                          time.Duration
		my                                    mysqlFlags
		namespaces                            []string
	)
	cmd := &cobra.Command{
		Use:   "restore --repo URL (--to-time T | --latest | engine targets) (--target-dir DIR | --target URL)",
		Short: "Restore to a point in time",
		Long: `Pick the newest base backup that can reach the target, check that the
archived stream is continuous from it to the target — refusing, with the
missing range named, before anything is written — then restore and replay.

MongoDB (--target mongodb://…): collections are created with their
options, documents inserted in parallel, indexes built, then the oplog is
replayed idempotently through ordinary writes up to --to-time, --to-ts T:I
or --latest. --ns db.coll or db.* selects namespaces; collections that
exist in the target are refused unless --force.

Times: RFC 3339 with a zone (2026-11-25T14:03:00.5Z) or PostgreSQL's form
(2026-11-25 14:03:00.5+00).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n := 0
			for _, s := range []string{toTime, toLSN, toXID, toName, toGTID, toPosition, toTS} {
				if s != "" {
					n++
				}
			}
			if latest {
				n++
			}
			if n != 1 {
				return usageErr(fmt.Errorf("give exactly one target: --to-time, --latest, --to-lsn, --to-xid, --to-name, --to-gtid, --to-position or --to-ts"))
			}
			if toTime != "" {
				if _, err := restore.ParseTime(toTime); err != nil {
					return usageErr(err)
				}
			}
			if (targetDir == "") == (target == "") {
				return usageErr(fmt.Errorf("give exactly one of --target-dir (PostgreSQL) or --target URL (MySQL, MongoDB)"))
			}
			if targetDir != "" {
				t := pgrestore.Target{Latest: latest, LSN: toLSN, XID: toXID, Name: toName}
				if toTime != "" {
					t.Time, _ = restore.ParseTime(toTime)
				}
				if toGTID != "" || toPosition != "" || toTS != "" {
					return usageErr(fmt.Errorf("--to-gtid, --to-position and --to-ts are for --target (MySQL, MongoDB)"))
				}
				tsMap := map[string]string{}
				for _, m := range tablespaceMap {
					old, dir, ok := strings.Cut(m, "=")
					if !ok || old == "" || !filepath.IsAbs(dir) {
						return usageErr(fmt.Errorf("--tablespace-map %q: want OID=/new/dir or /old/dir=/new/dir", m))
					}
					tsMap[old] = dir
				}
				return a.restorePostgres(cmd.Context(), &rf, pgrestore.Config{TargetDir: targetDir, Target: t,
					Timeline: timeline, Jobs: jobs, TablespaceMap: tsMap, Delta: delta, Exclusive: exclusive},
					startOpts{start: start, port: port, binDir: pgBinDir, timeout: startTimeout})
			}
			if target != "" {
				eng, err := engineOf("target", target)
				if err != nil {
					return err
				}
				if eng == engineMySQL {
					if toLSN != "" || toXID != "" || toName != "" || toTS != "" {
						return usageErr(fmt.Errorf("MySQL/MariaDB restores take --to-time, --to-gtid, --to-position or --latest"))
					}
					to, err := mysqlTarget(latest, toTime, toGTID, toPosition)
					if err != nil {
						return usageErr(err)
					}
					return a.restoreMySQL(cmd.Context(), &rf, target, to, jobs, my)
				}
				if toLSN != "" || toXID != "" || toName != "" || toGTID != "" || toPosition != "" {
					return usageErr(fmt.Errorf("MongoDB targets are --to-time, --to-ts or --latest"))
				}
				return a.restoreMongo(cmd.Context(), &rf, mongoRestoreArgs{target: target, toTime: toTime, toTS: toTS,
					latest: latest, namespaces: namespaces, force: my.force, jobs: jobs})
			}
			return nil
		},
	}
	rf.register(cmd, true)
	f := cmd.Flags()
	f.StringVar(&toTime, "to-time", "", "restore to this moment (RFC 3339 or PostgreSQL timestamp, with zone)")
	f.BoolVar(&latest, "latest", false, "restore everything archived")
	f.StringVar(&toLSN, "to-lsn", "", "PostgreSQL: restore to this LSN")
	f.StringVar(&toXID, "to-xid", "", "PostgreSQL: restore to this transaction id")
	f.StringVar(&toName, "to-name", "", "PostgreSQL: restore to this named restore point")
	f.StringVar(&toGTID, "to-gtid", "", "MySQL/MariaDB: restore through this GTID")
	f.StringVar(&toPosition, "to-position", "", "MySQL/MariaDB: restore to FILE:POS")
	f.StringVar(&toTS, "to-ts", "", "MongoDB: restore to this oplog timestamp T:I")
	f.StringVar(&timeline, "timeline", "latest", "PostgreSQL: timeline to follow (number or latest)")
	f.StringVar(&targetDir, "target-dir", "", "PostgreSQL: empty directory to restore the data directory into")
	f.StringVar(&target, "target", "", "MySQL/MongoDB: server URL to restore into")
	f.BoolVar(&start, "start", false, "PostgreSQL: start the restored server, wait until it reached the target and promoted, and report where it stopped")
	f.IntVar(&port, "port", 5433, "PostgreSQL: port for --start")
	f.StringVar(&pgBinDir, "pg-bindir", "", "PostgreSQL: server binaries for --start (default: the backup's major version's, or pg_config --bindir)")
	f.DurationVar(&startTimeout, "start-timeout", time.Hour, "PostgreSQL: how long --start waits for recovery")
	f.BoolVar(&delta, "delta", false, "PostgreSQL: reuse an existing data directory, fetching only chunks that differ (the server must be stopped)")
	f.BoolVar(&exclusive, "exclusive", false, "PostgreSQL: stop just before the target instead of just after it")
	f.StringArrayVar(&tablespaceMap, "tablespace-map", nil, "PostgreSQL: restore a tablespace elsewhere, OID=/new/dir or /old/dir=/new/dir (repeatable)")
	f.IntVar(&jobs, "jobs", 4, "parallel download/decrypt workers (MySQL: also loading connections)")
	my.registerRestore(f)
	f.StringArrayVar(&namespaces, "ns", nil, "MongoDB: restore only this namespace, db.collection or db.* (repeatable)")
	return cmd
}

func (a *app) walFetchCmd() *cobra.Command {
	var rf repoFlags
	cmd := &cobra.Command{
		Use:   "wal-fetch --repo URL WAL_FILE DEST_PATH",
		Short: "Fetch one WAL file for PostgreSQL's restore_command",
		Long: `For restore_command: restore_command = 'tidemark wal-fetch --repo URL
--identity-file F %f %p'. Exits 0 only once the complete file is in place,
1 when the file is not archived.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.walFetch(cmd.Context(), &rf, args[0], args[1])
		},
	}
	rf.register(cmd, true)
	return cmd
}
