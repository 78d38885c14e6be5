package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/agent"
	"github.com/tidemark/tidemark/archive"
	mongobackup "github.com/tidemark/tidemark/basebackup/mongodb"
	mysqlbackup "github.com/tidemark/tidemark/basebackup/mysql"
	pgbackup "github.com/tidemark/tidemark/basebackup/postgres"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/wal"
)

func (a *app) agentCmd() *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "agent --config FILE",
		Short: "Run the archiving daemon: streams, schedules, retention, drills, metrics",
		Long: `Look after one or more databases as configured in a YAML file: keep each
stream running (restarted with backoff; one writer per repository, by
lock), take base backups, expire, verify and drill on cron schedules, serve
Prometheus metrics on /metrics and health on /healthz, and alert by webhook
and mail when a stream is down or lagging, a scheduled backup is missed, or
a backup, verify or drill fails.

SIGHUP reloads the config (a bad config is reported and the running one
kept); SIGTERM or SIGINT flushes the streams and exits. See README.md
("The agent") for the config file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if config == "" {
				return usageErr(fmt.Errorf("--config (or TIDEMARK_CONFIG) is required"))
			}
			return a.runAgent(cmd.Context(), config)
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "agent config file (YAML)")
	cmd.AddCommand(a.agentInstallCmd())
	return cmd
}

func (a *app) runAgent(ctx context.Context, path string) error {
	cfg, err := agent.LoadConfig(path)
	if err != nil {
		return usageErr(err)
	}
	metrics := agent.NewMetrics()
	alerts, err := agent.NewAlerter(cfg.Alerts, a.log, metrics)
	if err != nil {
		return usageErr(err)
	}
	locks := newAgentLocks(a)
	if err := locks.hold(ctx, cfg); err != nil {
		return err
	}
	defer locks.releaseAll()
	if cfg.Listen != "" {
		l, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("agent: listen for metrics: %w", err)
		}
		srv := &http.Server{Handler: metrics.Handler(alerts), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(l)
		defer srv.Close()
		a.log.Info("serving /metrics and /healthz", "addr", l.Addr().String())
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		ag := &agent.Agent{Runner: agentRunner{a}, Log: a.log, Metrics: metrics, Alerts: alerts}
		go func() {
			defer close(done)
			ag.Run(runCtx, cfg)
		}()
		a.log.Info("agent running", "config", path, "databases", len(cfg.Databases))
		select {
		case <-ctx.Done():
			cancel()
			<-done
			a.log.Info("agent stopped")
			return nil
		case err := <-locks.lost:
			cancel()
			<-done
			return err
		case <-hup:
			next, err := agent.LoadConfig(path)
			if err != nil {
				a.log.Error("config reload failed; keeping the running config", "err", err)
				alerts.Raise(ctx, "agent", "config", fmt.Sprintf("config reload failed: %v", err))
				cancel()
				<-done
				continue
			}
			if err := locks.hold(ctx, next); err != nil {
				a.log.Error("config reload refused; keeping the running config", "err", err)
				alerts.Raise(ctx, "agent", "config", fmt.Sprintf("config reload refused: %v", err))
				cancel()
				<-done
				continue
			}
			alerts.Resolve(ctx, "agent", "config")
			a.log.Info("config reloaded", "config", path)
			cancel()
			<-done
			cfg = next
		}
	}
}

// agentRunner runs the agent's jobs through the commands' own code.
type agentRunner struct{ a *app }

func dbRepoFlags(db agent.Database) *repoFlags {
	return &repoFlags{repo: db.Repo, identityFile: db.IdentityFile, passphraseFile: db.PassphraseFile}
}

func (r agentRunner) Stream(ctx context.Context, db agent.Database, progress func(agent.StreamProgress)) error {
	s := db.Stream
	if db.Engine() == engineMongoDB {
		src, err := mongoSource(db)
		if err != nil {
			return err
		}
		return r.a.streamMongo(ctx, dbRepoFlags(db), src, orDefaultDuration(time.Duration(s.FlushInterval), time.Second),
			func(at time.Time) { progress(agent.StreamProgress{CaughtUpAt: at}) })
	}
	if db.Engine() == engineMySQL {
		pw, err := readPasswordFile(db.PasswordFile)
		if err != nil {
			return err
		}
		return r.a.streamMySQL(ctx, dbRepoFlags(db), db.Source, pw, 0, orDefaultDuration(time.Duration(s.FlushInterval), time.Second),
			func(p binlog.Progress) {
				at := p.EventTime // the newest durable commit: nothing older is missing
				if p.CaughtUp {
					at = time.Now()
				}
				progress(agent.StreamProgress{CaughtUpAt: at})
			})
	}
	return r.a.streamPostgres(ctx, dbRepoFlags(db), wal.Config{Source: db.Source, Slot: orDefault(s.Slot, "tidemark"),
		CreateSlot: s.CreateSlot, FlushInterval: max(time.Duration(s.FlushInterval), 0),
		Progress: func(p wal.Progress) {
			progress(agent.StreamProgress{Durable: uint64(p.Durable), ServerEnd: uint64(p.ServerEnd)})
		}})
}

func (r agentRunner) Backup(ctx context.Context, db agent.Database) (agent.BackupResult, error) {
	b := db.Backup
	if db.Engine() == engineMongoDB {
		src, err := mongoSource(db)
		if err != nil {
			return agent.BackupResult{}, err
		}
		res, err := r.a.runBackupMongo(ctx, dbRepoFlags(db), mongobackup.Config{Source: src, Jobs: max(b.Jobs, 4)})
		if err != nil {
			return agent.BackupResult{}, err
		}
		st := res.Manifest.Stats
		return agent.BackupResult{ID: res.Manifest.ID, Logical: st.Logical, NewStored: st.NewStored}, nil
	}
	if db.Engine() == engineMySQL {
		pw, err := readPasswordFile(db.PasswordFile)
		if err != nil {
			return agent.BackupResult{}, err
		}
		res, err := r.a.runBackupMySQL(ctx, dbRepoFlags(db), mysqlbackup.Config{Source: db.Source, Password: pw, Jobs: max(b.Jobs, 4)})
		if err != nil {
			return agent.BackupResult{}, err
		}
		st := res.Manifest.Stats
		return agent.BackupResult{ID: res.Manifest.ID, Logical: st.Logical, NewStored: st.NewStored}, nil
	}
	slot := "tidemark"
	if db.Stream != nil && db.Stream.Slot != "" {
		slot = db.Stream.Slot
	}
	res, err := r.a.runBackupPostgres(ctx, dbRepoFlags(db), pgbackup.Config{Source: db.Source, Slot: slot,
		Type: orDefault(b.Type, "full"), FastCheckpoint: b.FastCheckpoint, Jobs: max(b.Jobs, 4)})
	if err != nil {
		return agent.BackupResult{}, err
	}
	st := res.Manifest.Stats
	return agent.BackupResult{ID: res.Manifest.ID, Logical: st.Logical, NewStored: st.NewStored}, nil
}

func (r agentRunner) Expire(ctx context.Context, db agent.Database) error {
	repo, err := dbRepoFlags(db).open(ctx, false)
	if err != nil {
		return err
	}
	p := db.Retention.Policy()
	return repo.WithLock(ctx, "maintenance", archive.LockOptions{Purpose: "tidemark agent: expire"}, func(ctx context.Context) error {
		res, err := repo.Expire(ctx, p, time.Now(), archive.ExpireOptions{TrimStreams: trimStreams(repo)})
		if err != nil {
			return err
		}
		r.a.log.Info("expired", "database", db.Name, "policy", p.String(), "backups", len(res.Expired),
			"stream_objects", res.Streams.Objects, "chunk_objects", res.Chunks.Objects, "chunk_bytes", res.Chunks.Bytes)
		return nil
	})
}

func (r agentRunner) Verify(ctx context.Context, db agent.Database) error {
	repo, err := dbRepoFlags(db).open(ctx, true)
	if err != nil {
		return err
	}
	rep, _, err := r.a.verifyRepo(ctx, repo, nil)
	if err != nil {
		return err
	}
	for _, p := range rep.Problems {
		r.a.log.Error("verify problem", "database", db.Name, "problem", p)
	}
	return verifyOutcome(repo, rep)
}

func (r agentRunner) Drill(ctx context.Context, db agent.Database) (agent.DrillResult, error) {
	rf := dbRepoFlags(db)
	repo, err := rf.open(ctx, true)
	if err != nil {
		return agent.DrillResult{}, err
	}
	d := db.Drill
	rep, err := r.a.drill(ctx, repo, rf, drillOpts{randomPoint: true, runAs: orDefault(d.RunAs, "postgres"), workDir: d.WorkDir, target: d.Target,
		user: "postgres", jobs: 4, timeout: 30 * time.Minute})
	var res agent.DrillResult
	if rep != nil {
		res = agent.DrillResult{RTO: time.Duration(rep.RTOSeconds * float64(time.Second)), Problems: rep.Problems}
		if rep.Backup != "" {
			if perr := repo.PutReport(ctx, "drill", rep.Started, rep); perr != nil && err == nil {
				err = perr
			}
		}
	}
	return res, err
}

func (r agentRunner) Repository(ctx context.Context, db agent.Database) (agent.RepoSummary, error) {
	repo, err := dbRepoFlags(db).open(ctx, false)
	if err != nil {
		return agent.RepoSummary{}, err
	}
	backups, err := repo.Backups(ctx)
	if err != nil && !errors.Is(err, archive.ErrNoIdentity) {
		return agent.RepoSummary{}, err
	}
	var s agent.RepoSummary
	for _, b := range backups {
		s.Logical += b.Logical
		if b.Finished.After(s.NewestBackup) {
			s.NewestBackup = b.Finished
		}
	}
	_, s.Stored, err = repo.StoredSize(ctx, "")
	return s, err
}

// mongoSource puts the password from the database's password file into its
// URL, in memory only.
func mongoSource(db agent.Database) (string, error) {
	if db.PasswordFile == "" {
		return db.Source, nil
	}
	pw, err := readPasswordFile(db.PasswordFile)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(db.Source)
	if err != nil {
		return "", fmt.Errorf("database %s: source: %w", db.Name, err)
	}
	u.User = url.UserPassword(u.User.Username(), pw)
	return u.String(), nil
}

func orDefaultDuration(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
