package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/jobs"
	"github.com/tidemark/tidemark/restore"
)

func (a *app) restoreCmd() *cobra.Command {
	var (
		rf     repoFlags
		toTime string
		latest bool
		jobsN  int
		dryRun bool
		asJSON bool
		decl   *engine.Declarer
	)
	cmd := &cobra.Command{
		Use:   "restore --repo URL (--to-time T | --latest | an engine's own target) (--target-dir DIR | --target URL)",
		Short: "Restore to a point in time",
		Long: `Pick the newest base backup that can reach the target, check that the
archived stream is continuous from it to the target — refusing, with the
missing range named (exit 6) or the recoverable window shown (exit 7),
before anything is written — then restore and replay. The engine is the
one the repository was written by. --dry-run shows the plan and stops.

Times: RFC 3339 with a zone (2026-11-25T14:03:00.5Z) or PostgreSQL's form
(2026-11-25 14:03:00.5+00).

` + a.engines.Help(engine.CmdRestore),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			var targets []string
			fs.Visit(func(f *pflag.Flag) {
				if strings.HasPrefix(f.Name, "to-") || f.Name == "latest" {
					targets = append(targets, "--"+f.Name)
				}
			})
			if len(targets) != 1 {
				return usageErr(fmt.Errorf("give exactly one target: --to-time, --latest or one of the engine's own (%s)", strings.Join(ownTargets(fs), ", ")))
			}
			to := engine.Target{Latest: latest}
			if toTime != "" {
				t, err := restore.ParseTime(toTime)
				if err != nil {
					return usageErr(err)
				}
				to.Time = t
			}
			if jobsN < 1 {
				return usageErr(fmt.Errorf("--jobs must be at least 1"))
			}
			// The engine follows from where the restore goes; everything the
			// command line alone can refuse is refused before the repository
			// is opened.
			eng, err := a.restoreEngine(fs)
			if err != nil {
				return err
			}
			opts, err := a.engineOptions(eng, engine.CmdRestore, decl, fs)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			r, err := rf.open(ctx, true, a.log)
			if err != nil {
				return err
			}
			if rec, err := a.engines.ForRepo(ctx, r); err == nil && rec != eng {
				return usageErr(fmt.Errorf("the repository holds %s, not %s", rec.Info().Title, eng.Info().Title))
			}
			bar := a.newProgress()
			job := engine.RestoreJob{Job: engine.Job{Repo: r, RepoRef: rf.ref(), Log: a.log, Options: opts, Progress: a.progressOf(bar)},
				To: to, Jobs: jobsN}
			if dryRun {
				p, err := eng.Plan(ctx, job)
				if err != nil {
					return err
				}
				return a.printPlan(p, asJSON)
			}
			started := time.Now()
			rep, err := jobs.Restore(ctx, eng, job)
			bar.Done()
			if err != nil {
				return err
			}
			rep.Seconds = time.Since(started).Seconds()
			return a.printRestore(eng, rep, asJSON)
		},
	}
	rf.register(cmd, true)
	f := cmd.Flags()
	f.StringVar(&toTime, "to-time", "", "restore to this moment (RFC 3339 or PostgreSQL timestamp, with zone)")
	f.BoolVar(&latest, "latest", false, "restore everything archived")
	f.IntVar(&jobsN, "jobs", 4, "parallel download/decrypt workers (MySQL: also loading connections)")
	f.BoolVar(&dryRun, "dry-run", false, "show which backup and which stream range the restore would use, write nothing")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	decl = a.engines.Declare(engine.CmdRestore, f)
	return cmd
}

// restoreEngine finds the engine from the flag naming where the restore
// goes: a server URL's scheme, or the one engine that restores into a
// directory.
func (a *app) restoreEngine(fs *pflag.FlagSet) (engine.Engine, error) {
	var named []string
	var found engine.Engine
	for _, e := range a.engines.Engines() {
		flag := e.Info().RestoreTarget
		f := fs.Lookup(flag)
		if f == nil || f.Value.String() == "" {
			continue
		}
		if !slices.Contains(named, "--"+flag) {
			named = append(named, "--"+flag)
		}
		if flag == "target" {
			if found == nil {
				var err error
				if found, err = a.engineOf("target", f.Value.String()); err != nil {
					return nil, err
				}
			}
			continue
		}
		found = e
	}
	if len(named) != 1 {
		byFlag := map[string][]string{}
		var flags []string
		for _, e := range a.engines.Engines() {
			f := e.Info().RestoreTarget
			if byFlag[f] == nil {
				flags = append(flags, f)
			}
			byFlag[f] = append(byFlag[f], e.Info().Title)
		}
		var alts []string
		for _, f := range flags {
			alts = append(alts, fmt.Sprintf("--%s (%s)", f, strings.Join(byFlag[f], ", ")))
		}
		return nil, usageErr(fmt.Errorf("give exactly one of %s", strings.Join(alts, " or ")))
	}
	return found, nil
}

// ownTargets lists the engines' own --to-… flags, for the usage message.
func ownTargets(fs *pflag.FlagSet) []string {
	var out []string
	fs.VisitAll(func(f *pflag.Flag) {
		if strings.HasPrefix(f.Name, "to-") && f.Name != "to-time" {
			out = append(out, "--"+f.Name)
		}
	})
	return out
}

// warnSkipped says which newer bases a plan passed over: the restore goes
// ahead from an older one, but the damage must not pass unseen.
func (a *app) warnSkipped(p engine.Plan) {
	for _, s := range p.Skipped {
		fmt.Fprintf(a.stderr, "tidemark: warning: %s; an older backup is used (run `tidemark verify`)\n", s)
	}
}

func (a *app) printPlan(p *engine.Plan, asJSON bool) error {
	a.warnSkipped(*p)
	if asJSON {
		return json.NewEncoder(a.stdout).Encode(map[string]any{"backup": p.Backup.ID, "backup_finished": p.Backup.Finished,
			"from": p.From, "to": p.To, "detail": p.Detail, "skipped": p.Skipped})
	}
	fmt.Fprintf(a.stdout, "plan: backup %s (finished %s), then the stream from %s to %s\n", p.Backup.ID,
		p.Backup.Finished.UTC().Format(time.RFC3339), p.From, p.To)
	for _, l := range p.Lines {
		fmt.Fprintf(a.stdout, "  %s\n", l)
	}
	fmt.Fprintln(a.stdout, "dry run: nothing was written")
	return nil
}

func (a *app) printRestore(eng engine.Engine, rep *engine.RestoreReport, asJSON bool) error {
	a.warnSkipped(rep.Plan)
	if asJSON {
		out := map[string]any{"engine": eng.Info().Name, "backup": rep.Plan.Backup.ID, "from": rep.Plan.From, "to": rep.Plan.To,
			"seconds": rep.Seconds, "skipped": rep.Plan.Skipped}
		for k, v := range rep.Detail {
			out[k] = v
		}
		return json.NewEncoder(a.stdout).Encode(out)
	}
	for i, l := range rep.Lines {
		if i > 0 {
			l = "  " + l
		}
		fmt.Fprintln(a.stdout, l)
	}
	return nil
}
