package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/jobs"
	"github.com/tidemark/tidemark/internal/progress"
)

func (a *app) backupCmd() *cobra.Command {
	var (
		rf     repoFlags
		source string
		typ    string
		jobsN  int
		asJSON bool
		decl   *engine.Declarer
	)
	cmd := &cobra.Command{
		Use:   "backup --repo URL --source URL",
		Short: "Take a base backup into the repository",
		Long: `Take a base backup into the repository. Every backup stores only the chunks
the repository does not hold yet, and is committed (its manifest written
last) only once the stream from its start to its stop is archived, so every
listed backup is restorable.

` + a.engines.Help(engine.CmdBackup),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !slices.Contains(jobs.BackupTypes, typ) {
				return usageErr(fmt.Errorf("--type %q: want %s", typ, strings.Join(jobs.BackupTypes, ", ")))
			}
			if jobsN < 1 {
				return usageErr(fmt.Errorf("--jobs must be at least 1"))
			}
			eng, job, err := a.sourceJob(cmd, engine.CmdBackup, source, decl, &rf)
			if err != nil {
				return err
			}
			bar := a.newProgress()
			job.Progress = a.progressOf(bar)
			rep, err := jobs.Backup(cmd.Context(), eng, engine.BackupJob{Job: job, Source: source, Type: typ, Jobs: jobsN})
			bar.Done()
			if err != nil {
				return err
			}
			return a.printBackup(eng, rep, asJSON)
		},
	}
	rf.register(cmd, false)
	f := cmd.Flags()
	f.StringVar(&source, "source", "", "database to back up: "+a.engines.SchemeList()+" URL")
	f.StringVar(&typ, "type", "full", "full, incremental or differential")
	f.IntVar(&jobsN, "jobs", 4, "parallel compress/encrypt/upload workers (MySQL: also connections sharing the snapshot)")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	decl = a.engines.Declare(engine.CmdBackup, f)
	return cmd
}

func (a *app) printBackup(eng engine.Engine, rep *engine.BackupReport, asJSON bool) error {
	m, st := rep.Manifest, rep.Manifest.Stats
	if asJSON {
		out := map[string]any{"backup": m.ID, "engine": eng.Info().Name, "type": m.Type, "start": rep.Start, "stop": rep.Stop,
			"logical_bytes": st.Logical, "new_stored_bytes": st.NewStored, "new_chunks": st.NewChunks,
			"deduplicated_chunks": st.DedupChunks, "new_plain_bytes": st.NewPlain, "compression_ratio": st.CompressionRatio(), "seconds": rep.Seconds}
		for k, v := range rep.Detail {
			out[k] = v
		}
		return json.NewEncoder(a.stdout).Encode(out)
	}
	fmt.Fprintf(a.stdout, "backup %s (%s) committed: %s – %s\n", m.ID, m.Type, rep.Start, rep.Stop)
	took := time.Duration(rep.Seconds * float64(time.Second))
	rate := ""
	if r := progress.FormatRate(st.Logical, took); r != "" {
		rate = ", " + r
	}
	fmt.Fprintf(a.stdout, "  %s logical, %s newly stored (%d new chunks, %d already in the repository), %.1fs%s\n",
		progress.FormatBytes(st.Logical), progress.FormatBytes(st.NewStored), st.NewChunks, st.DedupChunks, rep.Seconds, rate)
	if r := st.CompressionRatio(); r > 0 {
		fmt.Fprintf(a.stdout, "  new chunks compressed %.2f:1 (%s → %s)\n", r, progress.FormatBytes(st.NewPlain), progress.FormatBytes(st.NewStored))
	}
	for _, l := range rep.Lines {
		fmt.Fprintf(a.stdout, "  %s\n", l)
	}
	return nil
}
