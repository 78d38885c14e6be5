package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/jobs"
)

// sourceJob finds the engine of --source, checks the engine's options and
// opens the repository (no key needed: stream and backup only write).
func (a *app) sourceJob(cmd *cobra.Command, ecmd engine.Command, source string, decl *engine.Declarer, rf *repoFlags) (engine.Engine, engine.Job, error) {
	eng, err := a.engineOf("source", source)
	if err != nil {
		return nil, engine.Job{}, err
	}
	opts, err := a.engineOptions(eng, ecmd, decl, cmd.Flags())
	if err != nil {
		return nil, engine.Job{}, err
	}
	r, err := rf.open(cmd.Context(), false, a.log)
	if err != nil {
		return nil, engine.Job{}, err
	}
	return eng, engine.Job{Repo: r, RepoRef: rf.ref(), Log: a.log, Options: opts}, nil
}

func (a *app) streamCmd() *cobra.Command {
	var (
		rf            repoFlags
		source        string
		flushInterval time.Duration
		decl          *engine.Declarer
	)
	cmd := &cobra.Command{
		Use:   "stream --repo URL --source URL",
		Short: "Continuously archive a database's change stream (WAL, binlog, oplog)",
		Long: `Stream changes from the source over its own replication protocol into the
repository, acknowledging to the server only what is durable in the
repository. Runs until interrupted; SIGINT/SIGTERM flush and exit cleanly.
Transient failures reconnect with backoff; a gap (history the archive
needs is gone from the server) is recorded and ends the stream (exit 6).

` + a.engines.Help(engine.CmdStream),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if flushInterval <= 0 {
				return usageErr(fmt.Errorf("--flush-interval must be positive"))
			}
			eng, job, err := a.sourceJob(cmd, engine.CmdStream, source, decl, &rf)
			if err != nil {
				return err
			}
			return jobs.Stream(cmd.Context(), eng, engine.StreamJob{Job: job, Source: source, FlushInterval: flushInterval})
		},
	}
	rf.register(cmd, false)
	f := cmd.Flags()
	f.StringVar(&source, "source", "", "database to stream from: "+a.engines.SchemeList()+" URL (no password: use ~/.pgpass, PGPASSFILE, a password file or the environment)")
	f.DurationVar(&flushInterval, "flush-interval", time.Second, "make arrived data durable in the repository at least this often")
	decl = a.engines.Declare(engine.CmdStream, f)
	return cmd
}
