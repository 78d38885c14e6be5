// Package mysql is the MySQL/MariaDB engine: the binlog streamed as a
// replica (package binlog), logical base backups from one consistent
// snapshot (basebackup/mysql), and restores that load a base into a
// server and replay the binlog to the target (restore/mysql).
package mysql

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	mybackup "github.com/tidemark/tidemark/basebackup/mysql"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/restore"
	myrestore "github.com/tidemark/tidemark/restore/mysql"
)

// Engine is MySQL/MariaDB.
type Engine struct{}

// New returns the MySQL/MariaDB engine.
func New() *Engine { return &Engine{} }

// Info implements engine.Engine.
func (*Engine) Info() engine.Info {
	return engine.Info{Name: "mysql", Title: "MySQL/MariaDB", Stream: "binlog", Schemes: []string{"mysql", "mariadb"},
		StreamLock: "stream-mysql", Credentials: "a password file (--password-file, password_file) or the URL in TIDEMARK_SOURCE", RestoreTarget: "target"}
}

// Flags implements engine.Engine.
func (*Engine) Flags(cmd engine.Command, d *engine.Declarer) {
	switch cmd {
	case engine.CmdStream:
		d.Uint32("server-id", 0, "replica server id (default derived from the repository id)")
		d.String("password-file", "", "file holding the source password (or put the URL with its password in TIDEMARK_SOURCE)")
	case engine.CmdBackup:
		d.Strings("databases", "back up only these databases (default: all but the system schemas)")
		d.Bool("with-users", false, "also back up accounts and their grants")
		d.String("password-file", "", "file holding the source password (or put the URL with its password in TIDEMARK_SOURCE)")
	case engine.CmdRestore:
		d.String("target", "", "server URL to restore into")
		d.String("to-gtid", "", "restore through this GTID")
		d.String("to-position", "", "restore to FILE:POS")
		d.Strings("databases", "restore only these databases of the backup (refused for now: the binlog replay applies every database)")
		d.String("load-method", myrestore.LoadAuto, "how rows are loaded: auto (infile when the target allows local_infile, else insert), insert (multi-row prepared INSERTs) or infile (LOAD DATA LOCAL INFILE; the target must allow local_infile)")
		d.Bool("force", false, "drop and replace target databases that exist (default: refuse)")
		d.String("password-file", "", "file holding the target password (or put the URL with its password in TIDEMARK_TARGET)")
	case engine.CmdDrill:
		d.String("run-as", "", "when running as root: the OS user the scratch server runs as (default mysql)")
		d.String("workdir", "", "where the scratch directory goes (default: the temp dir)")
	}
}

// Help implements engine.Engine.
func (*Engine) Help(cmd engine.Command) string {
	switch cmd {
	case engine.CmdStream:
		return `MySQL/MariaDB (mysql://): binlog events, registered as a replica; segments
end only at commits. A purged binlog or a server whose history is not the
archived one is a recorded gap (exit 6). Several hosts
(mysql://user@h1:3306,h2:3306/) are one MariaDB replication cluster: the
streamer follows the primary among them and continues the archive on a
promoted replica by GTID; the old primary's archived transactions that never
reached it are a recorded gap.`
	case engine.CmdBackup:
		return `MySQL/MariaDB: a logical backup from one consistent snapshot shared by
--jobs connections (commits are blocked only while they open it), with the
binlog position and GTID it is consistent with; schema (tables by exact
SHOW CREATE, views, routines, triggers, events, --with-users accounts) and
rows by primary-key range in a typed binary format, as deduplicated,
compressed, encrypted chunks. Non-transactional tables (MyISAM, Aria) are
copied while commits stay blocked.`
	case engine.CmdRestore:
		return `MySQL/MariaDB (--target mysql://…): the base is loaded in parallel in
strict mode, then the archived binlog is replayed in one session up to
--to-time, --to-gtid, --to-position or --latest, deciding per transaction
by its commit. Databases that exist in the target are refused unless --force.`
	case engine.CmdDrill:
		return `MySQL/MariaDB: a throwaway MariaDB on a free loopback port (one account with
a random password), the base loaded and the binlog replayed, then CHECK
TABLE ... EXTENDED and a row count for every table.`
	}
	return ""
}

// Check implements engine.Engine.
func (*Engine) Check(cmd engine.Command, o engine.Options) error {
	switch cmd {
	case engine.CmdRestore:
		if o.String("target") == "" {
			return fmt.Errorf("a MySQL/MariaDB restore needs --target mysql://…: the server to restore into")
		}
		if m := o.String("load-method"); m != myrestore.LoadAuto && m != myrestore.LoadInsert && m != myrestore.LoadInfile {
			return fmt.Errorf("--load-method %q: want auto, insert or infile", m)
		}
		if g := o.String("to-gtid"); g != "" {
			if _, err := binlog.ParseMariaGTID(g); err != nil {
				return fmt.Errorf("--to-gtid: %w (MySQL uuid:n targets are not supported by base restores yet)", err)
			}
		}
		if p := o.String("to-position"); p != "" {
			if pos, err := binlog.ParsePosition(p); err != nil || pos.GTID != "" {
				return fmt.Errorf("--to-position %q: want FILE:POS", p)
			}
		}
	}
	return nil
}

// password reads --password-file, "" when none is given.
func password(o engine.Options) (string, error) {
	path := o.String("password-file")
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// Stream implements engine.Engine.
func (*Engine) Stream(ctx context.Context, job engine.StreamJob) error {
	srcs, err := binlog.ParseSources(job.Source)
	if err != nil {
		return err
	}
	pw, err := password(job.Options)
	if err != nil {
		return err
	}
	for i := range srcs {
		if pw != "" {
			srcs[i].Password = pw
		}
	}
	cfg := binlog.Config{Repo: job.Repo, Source: srcs[0], Sources: srcs, ServerID: job.Options.Uint32("server-id"), FlushInterval: job.FlushInterval,
		Log: job.Log, Observe: job.Observe, Progress: func(p binlog.Progress) {
			job.Log.Debug("binlog durable", "stream", p.Stream, "position", p.Durable.String(), "event_time", p.EventTime, "caught_up", p.CaughtUp)
			if job.Durable != nil {
				at := p.EventTime // the newest durable commit: nothing older is missing
				if p.CaughtUp {
					at = time.Now()
				}
				job.Durable(engine.StreamProgress{CaughtUpAt: at, Server: p.Server, Position: p.Durable.String()})
			}
		}}
	return binlog.Stream(ctx, cfg)
}

// Backup implements engine.Engine.
func (*Engine) Backup(ctx context.Context, job engine.BackupJob) (*engine.BackupReport, error) {
	pw, err := password(job.Options)
	if err != nil {
		return nil, err
	}
	res, err := mybackup.Backup(ctx, mybackup.Config{Repo: job.Repo, Source: job.Source, Password: pw, Jobs: job.Jobs,
		Databases: job.Options.Strings("databases"), WithUsers: job.Options.Bool("with-users"), Log: job.Log,
		Progress: func(done, total int64) {
			job.Report(engine.Step{Phase: "backup", Unit: "bytes", Done: done, Total: total})
		}})
	if err != nil {
		return nil, err
	}
	m, meta := res.Manifest, res.Meta
	return &engine.BackupReport{Manifest: m, Start: m.Start, Stop: m.Stop,
		Lines: []string{
			fmt.Sprintf("consistent at %s (%s)", m.Start, meta.SnapshotTime.Format(time.RFC3339Nano)),
			fmt.Sprintf("%d databases, %d tables, %d rows", len(meta.Databases), meta.Tables, meta.Rows),
			fmt.Sprintf("commits blocked %.1f ms, DDL blocked %.1f ms", meta.LockHeldMS, meta.DDLBlockedMS),
		},
		Detail: map[string]any{"position": m.Start, "binlog_file": meta.BinlogFile, "binlog_pos": meta.BinlogPos, "gtid": meta.GTID,
			"snapshot_time": meta.SnapshotTime, "databases": meta.Databases, "tables": meta.Tables, "rows": meta.Rows,
			"commits_blocked_ms": meta.LockHeldMS, "ddl_blocked_ms": meta.DDLBlockedMS}}, nil
}

// Drill implements engine.Engine.
func (*Engine) Drill(ctx context.Context, job engine.DrillJob) (*restore.DrillReport, error) {
	to := binlog.Target{Latest: true}
	if !job.To.Time.IsZero() {
		to = binlog.Target{Time: job.To.Time}
	}
	var as *restore.OSUser
	if os.Geteuid() == 0 {
		name := job.Options.String("run-as")
		if name == "" {
			name = "mysql"
		}
		var err error
		if as, err = restore.LookupOSUser(name); err != nil {
			return nil, err
		}
	}
	return myrestore.Drill(ctx, myrestore.DrillConfig{Repo: job.Repo, To: to, WorkDir: job.Options.String("workdir"), As: as,
		Jobs: job.Jobs, Log: job.Log})
}
