package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tidemark/tidemark/archive"
	mysqlbackup "github.com/tidemark/tidemark/basebackup/mysql"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/internal/progress"
	"github.com/tidemark/tidemark/restore"
	mysqlrestore "github.com/tidemark/tidemark/restore/mysql"
)

// mysqlFlags are the MySQL/MariaDB options of backup and restore.
type mysqlFlags struct {
	databases    []string
	withUsers    bool
	force        bool
	passwordFile string
	loadMethod   string
}

func (m *mysqlFlags) registerBackup(f *pflag.FlagSet) {
	f.StringSliceVar(&m.databases, "databases", nil, "MySQL/MariaDB: back up only these databases (default: all but the system schemas)")
	f.BoolVar(&m.withUsers, "with-users", false, "MySQL/MariaDB: also back up accounts and their grants")
	m.registerPassword(f)
}

func (m *mysqlFlags) registerPassword(f *pflag.FlagSet) {
	f.StringVar(&m.passwordFile, "password-file", "", "MySQL/MariaDB: file holding the source password (or put the URL with its password in TIDEMARK_SOURCE)")
}

func (m *mysqlFlags) registerRestore(f *pflag.FlagSet) {
	f.StringSliceVar(&m.databases, "databases", nil, "MySQL/MariaDB: restore only these databases of the backup (refused for now: the binlog replay applies every database)")
	f.StringVar(&m.loadMethod, "load-method", mysqlrestore.LoadInsert, "MySQL/MariaDB: how rows are loaded: insert (multi-row prepared INSERTs) or infile (LOAD DATA LOCAL INFILE; the server must allow local_infile)")
	f.BoolVar(&m.force, "force", false, "MySQL/MariaDB: drop and replace target databases that exist; MongoDB: target collections (default: refuse)")
	f.StringVar(&m.passwordFile, "password-file", "", "MySQL/MariaDB: file holding the target password (or put the URL with its password in TIDEMARK_TARGET)")
}

func (m *mysqlFlags) password() (string, error) { return readPasswordFile(m.passwordFile) }

// readPasswordFile reads a password kept in a file (its final newline
// dropped); "" when no file is given.
func readPasswordFile(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", usageErr(fmt.Errorf("password file: %w", err))
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// runBackupMySQL takes a backup under the maintenance lock; shared by the
// command and the agent.
func (a *app) runBackupMySQL(ctx context.Context, rf *repoFlags, cfg mysqlbackup.Config) (*mysqlbackup.Result, error) {
	r, err := rf.open(ctx, false)
	if err != nil {
		return nil, err
	}
	cfg.Repo, cfg.Log = r, a.log
	var res *mysqlbackup.Result
	err = r.WithLock(ctx, "maintenance", archive.LockOptions{Purpose: "tidemark backup (MySQL/MariaDB)"}, func(ctx context.Context) error {
		res, err = mysqlbackup.Backup(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, err
	}
	m := res.Manifest
	a.log.Info("base backup committed", "backup", m.ID, "position", m.Start, "tables", res.Meta.Tables, "rows", res.Meta.Rows,
		"logical_bytes", m.Stats.Logical, "new_stored_bytes", m.Stats.NewStored, "commits_blocked_ms", res.Meta.LockHeldMS,
		"seconds", m.Finished.Sub(m.Started).Seconds())
	return res, nil
}

func (a *app) backupMySQL(ctx context.Context, rf *repoFlags, source string, jobs int, mf mysqlFlags, asJSON bool) error {
	pw, err := mf.password()
	if err != nil {
		return err
	}
	bar := progress.New(a.stderr)
	cfg := mysqlbackup.Config{Source: source, Password: pw, Jobs: jobs, Databases: mf.databases, WithUsers: mf.withUsers,
		Progress: func(done, total int64) { bar.Bytes("backup", done>>20, done, total) }}
	start := time.Now()
	res, err := a.runBackupMySQL(ctx, rf, cfg)
	bar.Done()
	if err != nil {
		return err
	}
	st, m, meta := res.Manifest.Stats, res.Manifest, res.Meta
	secs := time.Since(start).Seconds()
	if asJSON {
		return json.NewEncoder(a.stdout).Encode(map[string]any{"backup": m.ID, "type": m.Type, "position": m.Start,
			"binlog_file": meta.BinlogFile, "binlog_pos": meta.BinlogPos, "gtid": meta.GTID, "snapshot_time": meta.SnapshotTime,
			"databases": meta.Databases, "tables": meta.Tables, "rows": meta.Rows, "logical_bytes": st.Logical,
			"new_stored_bytes": st.NewStored, "new_chunks": st.NewChunks, "deduplicated_chunks": st.DedupChunks, "seconds": secs,
			"bytes_per_second": float64(st.Logical) / secs, "commits_blocked_ms": meta.LockHeldMS, "ddl_blocked_ms": meta.DDLBlockedMS})
	}
	fmt.Fprintf(a.stdout, "backup %s committed: consistent at %s (%s)\n", m.ID, m.Start, meta.SnapshotTime.Format(time.RFC3339Nano))
	fmt.Fprintf(a.stdout, "  %d databases, %d tables, %d rows; %s logical, %s newly stored (%d new chunks, %d already in the repository), %.1fs, %.0f MiB/s\n",
		len(meta.Databases), meta.Tables, meta.Rows, humanBytes(st.Logical), humanBytes(st.NewStored), st.NewChunks, st.DedupChunks,
		secs, float64(st.Logical)/(1<<20)/secs)
	fmt.Fprintf(a.stdout, "  commits blocked %.1f ms, DDL blocked %.1f ms\n", meta.LockHeldMS, meta.DDLBlockedMS)
	return nil
}

// mysqlTarget turns the restore flags into a replay target.
func mysqlTarget(latest bool, toTime, toGTID, toPosition string) (binlog.Target, error) {
	switch {
	case latest:
		return binlog.Target{Latest: true}, nil
	case toTime != "":
		t, err := restore.ParseTime(toTime)
		return binlog.Target{Time: t}, err
	case toGTID != "":
		if _, err := binlog.ParseMariaGTID(toGTID); err != nil {
			return binlog.Target{}, fmt.Errorf("--to-gtid: %w (MySQL uuid:n targets are not supported by base restores yet)", err)
		}
		return binlog.Target{GTID: toGTID}, nil
	case toPosition != "":
		p, err := binlog.ParsePosition(toPosition)
		if err != nil || p.GTID != "" {
			return binlog.Target{}, fmt.Errorf("--to-position %q: want FILE:POS", toPosition)
		}
		return binlog.Target{Position: p}, nil
	}
	return binlog.Target{}, fmt.Errorf("MySQL/MariaDB restores take --to-time, --to-gtid, --to-position or --latest")
}

func (a *app) restoreMySQL(ctx context.Context, rf *repoFlags, target string, to binlog.Target, jobs int, mf mysqlFlags) error {
	pw, err := mf.password()
	if err != nil {
		return err
	}
	if mf.loadMethod != mysqlrestore.LoadInsert && mf.loadMethod != mysqlrestore.LoadInfile {
		return usageErr(fmt.Errorf("--load-method %q: want insert or infile", mf.loadMethod))
	}
	r, err := rf.open(ctx, true)
	if err != nil {
		return err
	}
	bar := progress.New(a.stderr)
	cfg := mysqlrestore.Config{Repo: r, Target: target, Password: pw, To: to, Jobs: jobs, Databases: mf.databases, Force: mf.force,
		LoadMethod: mf.loadMethod, Log: a.log, Progress: func(done, total int64) { bar.Bytes("restore", done>>20, done, total) }}
	res, err := mysqlrestore.Restore(ctx, cfg)
	bar.Done()
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "restored backup %s (consistent at %s): %d tables, %d rows in %.1fs\n", res.Plan.Backup.ID, res.Plan.From,
		res.Tables, res.Rows, res.LoadTime.Seconds())
	if rp := res.Replay; rp != nil {
		fmt.Fprintf(a.stdout, "  binlog replayed to %s: %d transactions, %d events in %.1fs; stopped at %s", to, rp.Transactions, rp.Events,
			res.ReplayTime.Seconds(), rp.End)
		if !rp.LastTime.IsZero() {
			fmt.Fprintf(a.stdout, ", last commit %s", rp.LastTime.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(a.stdout)
	}
	return nil
}

// verifyMySQL is the MySQL part of verify: from every MySQL base backup,
// the archived binlog must continue without a hole to the newest archived
// event. One problem per base that cannot be rolled forward.
func verifyMySQL(ctx context.Context, r *archive.Repository) ([]string, error) {
	return mysqlrestore.VerifyBases(ctx, r)
}
