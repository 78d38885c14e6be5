package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/restore"
	mongorestore "github.com/tidemark/tidemark/restore/mongodb"
	mysqlrestore "github.com/tidemark/tidemark/restore/mysql"
	pgrestore "github.com/tidemark/tidemark/restore/postgres"
)

type drillOpts struct {
	toTime      string
	randomPoint bool
	runAs       string
	workDir     string
	binDir      string
	user        string
	jobs        int
	timeout     time.Duration
	target      string // MongoDB: the scratch server
}

func (a *app) drillCmd() *cobra.Command {
	var (
		rf     repoFlags
		o      drillOpts
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "drill --repo URL --identity-file F [--to-time T | --random-point]",
		Short: "Prove a repository restores: restore into a scratch server, check it, measure the RTO",
		Long: `Restore into a scratch directory, start a throwaway PostgreSQL on a free
port (local socket only), recover to the target, then check every B-tree
index with amcheck and count every table's rows in every database. For a
MySQL/MariaDB repository: a throwaway MariaDB on a free loopback port (one
account with a random password), the base loaded and the binlog replayed,
then CHECK TABLE ... EXTENDED and a row count for every table. For a
MongoDB repository: into the empty scratch server --target names, every
document read back and every index the backup recorded looked for; the
scratch server is emptied again afterwards. The
scratch server is stopped and removed afterwards. The result (durations,
counts, outcome — no names) is stored in the repository as a report, which
status shows. Exits non-zero when the drill cannot run or its checks find
problems.

Target: --latest by default, --to-time T, or --random-point (a random time
between the oldest and the newest backup's end).

PostgreSQL does not run as root: as root, the scratch server runs as
--run-as (default postgres), which must be able to read the repository and
the key file, since recovery fetches WAL with tidemark wal-fetch as that user.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.toTime != "" && o.randomPoint {
				return usageErr(fmt.Errorf("--to-time and --random-point exclude each other"))
			}
			ctx := cmd.Context()
			r, err := rf.open(ctx, true)
			if err != nil {
				return err
			}
			rep, err := a.drill(ctx, r, &rf, o)
			if rep != nil && rep.Backup != "" {
				if perr := r.PutReport(ctx, "drill", rep.Started, rep); perr != nil && err == nil {
					err = perr
				}
			}
			if rep != nil {
				a.printDrill(rep, asJSON)
			}
			return err
		},
	}
	rf.register(cmd, true)
	f := cmd.Flags()
	f.StringVar(&o.toTime, "to-time", "", "recover to this time (RFC 3339 or 'YYYY-MM-DD HH:MM:SS[+TZ]')")
	f.BoolVar(&o.randomPoint, "random-point", false, "recover to a random time between the oldest and newest backup")
	f.StringVar(&o.runAs, "run-as", "postgres", "when running as root: the OS user the scratch server runs as (MariaDB: mysql unless set)")
	f.StringVar(&o.workDir, "workdir", "", "where the scratch directory goes (default: the temp dir)")
	f.StringVar(&o.binDir, "pg-bindir", "", "PostgreSQL binaries (default: found from the backup's version)")
	f.StringVar(&o.user, "db-user", "postgres", "database superuser the checks connect as")
	f.IntVar(&o.jobs, "jobs", 4, "parallel fetch/decrypt/decompress workers")
	f.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up when recovery takes longer")
	f.StringVar(&o.target, "target", "", "MongoDB: an empty scratch server (mongodb:// URL) to restore into; emptied again afterwards")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// drill runs one PostgreSQL drill; shared by the command and the agent.
func (a *app) drill(ctx context.Context, r *archive.Repository, rf *repoFlags, o drillOpts) (*restore.DrillReport, error) {
	target := pgrestore.Target{Latest: true}
	switch {
	case o.toTime != "":
		t, err := restore.ParseTime(o.toTime)
		if err != nil {
			return nil, usageErr(fmt.Errorf("--to-time: %w", err))
		}
		target = pgrestore.Target{Time: t}
	case o.randomPoint:
		backups, err := r.Backups(ctx)
		if err != nil {
			return nil, err
		}
		if len(backups) == 0 {
			return nil, fmt.Errorf("drill: %w: the repository holds no backup", restore.ErrUnreachable)
		}
		lo, hi := backups[0].Finished, backups[len(backups)-1].Finished
		target = pgrestore.Target{Time: lo.Add(time.Duration(rand.Int64N(int64(hi.Sub(lo)) + 1)))}
	}
	if src, err := r.Source(ctx); err == nil {
		switch src.Engine {
		case engineMySQL:
			return a.drillMySQL(ctx, r, target.Time, o)
		case engineMongoDB:
			return a.drillMongo(ctx, r, target.Time, o)
		}
	}
	var as *restore.OSUser
	if os.Geteuid() == 0 {
		var err error
		if as, err = restore.LookupOSUser(o.runAs); err != nil {
			return nil, usageErr(err)
		}
	}
	rc, err := restoreCommand(rf)
	if err != nil {
		return nil, err
	}
	rep, err := pgrestore.Drill(ctx, pgrestore.DrillConfig{Repo: r, Target: target, RestoreCommand: rc, WorkDir: o.workDir,
		As: as, BinDir: o.binDir, User: o.user, Jobs: o.jobs, Timeout: o.timeout, Log: a.log})
	if err == nil && !rep.OK {
		err = fmt.Errorf("drill: %w: %d problems found (see the log)", archive.ErrVerifyFailed, rep.Problems)
	}
	return rep, err
}

// drillMySQL restores into a scratch MariaDB; at is the target time, zero
// for everything archived.
func (a *app) drillMySQL(ctx context.Context, r *archive.Repository, at time.Time, o drillOpts) (*restore.DrillReport, error) {
	to := binlog.Target{Latest: true}
	if !at.IsZero() {
		to = binlog.Target{Time: at}
	}
	var as *restore.OSUser
	if os.Geteuid() == 0 {
		name := o.runAs
		if name == "" || name == "postgres" {
			name = "mysql"
		}
		var err error
		if as, err = restore.LookupOSUser(name); err != nil {
			return nil, usageErr(err)
		}
	}
	rep, err := mysqlrestore.Drill(ctx, mysqlrestore.DrillConfig{Repo: r, To: to, WorkDir: o.workDir, As: as, Jobs: o.jobs, Log: a.log})
	if err == nil && !rep.OK {
		err = fmt.Errorf("drill: %w: %d problems found (see the log)", archive.ErrVerifyFailed, rep.Problems)
	}
	return rep, err
}

// drillMongo restores into the scratch server --target names.
func (a *app) drillMongo(ctx context.Context, r *archive.Repository, at time.Time, o drillOpts) (*restore.DrillReport, error) {
	if o.target == "" {
		return nil, usageErr(fmt.Errorf("MongoDB drills need --target: an empty scratch server to restore into (Tidemark starts none for MongoDB)"))
	}
	if _, err := engineOf("target", o.target); err != nil {
		return nil, err
	}
	to := mongorestore.Target{Latest: true}
	if !at.IsZero() {
		to = mongorestore.Target{Time: at}
	}
	rep, err := mongorestore.Drill(ctx, mongorestore.DrillConfig{Repo: r, To: to, TargetURL: o.target, Jobs: o.jobs, Log: a.log})
	if err == nil && !rep.OK {
		err = fmt.Errorf("drill: %w: %d problems found (see the log)", archive.ErrVerifyFailed, rep.Problems)
	}
	return rep, err
}

func (a *app) printDrill(rep *restore.DrillReport, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
		return
	}
	outcome := "FAILED"
	if rep.OK {
		outcome = "ok"
	}
	fmt.Fprintf(a.stdout, "drill %s: backup %s to %s\n  RTO %.1fs (restore %.1fs, recovery %.1fs)\n  checked %d databases, %d tables, %d rows, %d indexes; %d problems\n",
		outcome, rep.Backup, rep.Target, rep.RTOSeconds, rep.RestoreSeconds, rep.RecoverySeconds, rep.Databases, rep.Tables, rep.Rows, rep.IndexesChecked, rep.Problems)
}
