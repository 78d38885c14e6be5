package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/jobs"
	"github.com/tidemark/tidemark/restore"
)

func (a *app) drillCmd() *cobra.Command {
	var (
		rf          repoFlags
		toTime      string
		randomPoint bool
		jobsN       int
		timeout     time.Duration
		asJSON      bool
		decl        *engine.Declarer
	)
	cmd := &cobra.Command{
		Use:   "drill --repo URL --identity-file F [--to-time T | --random-point]",
		Short: "Prove a repository restores: restore into a scratch server, check it, measure the RTO",
		Long: `Restore into a scratch server, check what was restored, and measure the
RTO. The result (durations, counts, outcome — no names) is stored in the
repository as a report, which status shows. Exits non-zero when the drill
cannot run or its checks find problems. The scratch server is stopped and
removed (or emptied) afterwards.

Target: --latest by default, --to-time T, or --random-point (a random point
between the oldest backup's end and the newest archived change, so there is
always something to replay; PostgreSQL picks an LSN in that range).

` + a.engines.Help(engine.CmdDrill),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if toTime != "" && randomPoint {
				return usageErr(fmt.Errorf("--to-time and --random-point exclude each other"))
			}
			var to engine.Target
			if toTime != "" {
				t, err := restore.ParseTime(toTime)
				if err != nil {
					return usageErr(fmt.Errorf("--to-time: %w", err))
				}
				to.Time = t
			}
			ctx := cmd.Context()
			r, err := rf.open(ctx, true, a.log)
			if err != nil {
				return err
			}
			eng, err := a.engines.ForRepo(ctx, r)
			if err != nil {
				return err
			}
			opts, err := a.engineOptions(eng, engine.CmdDrill, decl, cmd.Flags())
			if err != nil {
				return err
			}
			if randomPoint {
				if to.Time, err = jobs.RandomPoint(ctx, eng, r); err != nil {
					return err
				}
			}
			rep, err := jobs.Drill(ctx, eng, engine.DrillJob{Job: engine.Job{Repo: r, RepoRef: rf.ref(), Log: a.log, Options: opts},
				To: to, Random: randomPoint, Jobs: jobsN, Timeout: timeout})
			if rep != nil {
				a.printDrill(rep, asJSON)
			}
			return err
		},
	}
	rf.register(cmd, true)
	f := cmd.Flags()
	f.StringVar(&toTime, "to-time", "", "recover to this time (RFC 3339 or 'YYYY-MM-DD HH:MM:SS[+TZ]')")
	f.BoolVar(&randomPoint, "random-point", false, "recover to a random point between the oldest backup's end and the newest archived change")
	f.IntVar(&jobsN, "jobs", 4, "parallel fetch/decrypt/decompress workers")
	f.DurationVar(&timeout, "timeout", 30*time.Minute, "give up when recovery takes longer")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	decl = a.engines.Declare(engine.CmdDrill, f)
	return cmd
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
	start := ""
	if rep.ServerStartSeconds > 0 {
		start = fmt.Sprintf("scratch server start %.1fs, ", rep.ServerStartSeconds)
	}
	fmt.Fprintf(a.stdout, "drill %s: backup %s to %s\n  RTO %.1fs (%srestore %.1fs, recovery %.1fs)\n  checked %d databases, %d tables, %d rows, %d indexes; %d problems\n",
		outcome, rep.Backup, rep.Target, rep.RTOSeconds, start, rep.RestoreSeconds, rep.RecoverySeconds, rep.Databases, rep.Tables, rep.Rows, rep.IndexesChecked, rep.Problems)
}
