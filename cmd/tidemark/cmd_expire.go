package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/jobs"
	"github.com/tidemark/tidemark/internal/progress"
)

func (a *app) expireCmd() *cobra.Command {
	var (
		rf     repoFlags
		p      archive.Policy
		window string
		dryRun bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "expire --repo URL [--keep-daily N …] [--pitr-window 14d] [--dry-run]",
		Short: "Delete backups, stream data and chunks the retention policy no longer needs",
		Long: `Apply a retention policy. A backup is kept when any rule keeps it, and the
newest backup is always kept:

  --keep-last N       the N newest backups
  --keep-daily N      the newest backup of each of the last N days that have one
  --keep-weekly N     … ISO weeks, --keep-monthly N … months, --keep-yearly N … years
  --pitr-window 14d   every point of the last 14 days stays restorable: the
                      backups inside the window and the newest one before it

Then the stream data (WAL, binlog, oplog) older than the oldest kept backup
and every chunk no kept backup references are deleted. Nothing a kept
backup or the window needs is ever deleted. Runs under the repository's
maintenance lock (no backup runs meanwhile) and is safe to interrupt at any
moment: run it again to finish. Needs no key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if window != "" {
				d, err := archive.ParseDuration(window)
				if err != nil {
					return usageErr(fmt.Errorf("--pitr-window: %w", err))
				}
				p.Window = d
			}
			if p.Empty() {
				return usageErr(fmt.Errorf("no retention rule given: set at least one of --keep-last, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, --pitr-window"))
			}
			ctx := cmd.Context()
			r, err := rf.open(ctx, false, a.log)
			if err != nil {
				return err
			}
			res, err := jobs.Expire(ctx, a.engines, r, p, time.Now(), dryRun, "tidemark expire")
			if err != nil {
				return err
			}
			return a.printExpire(res, p, asJSON)
		},
	}
	rf.register(cmd, false)
	f := cmd.Flags()
	f.IntVar(&p.KeepLast, "keep-last", 0, "keep the N newest backups")
	f.IntVar(&p.KeepDaily, "keep-daily", 0, "keep the newest backup of each of the last N days")
	f.IntVar(&p.KeepWeekly, "keep-weekly", 0, "keep the newest backup of each of the last N ISO weeks")
	f.IntVar(&p.KeepMonthly, "keep-monthly", 0, "keep the newest backup of each of the last N months")
	f.IntVar(&p.KeepYearly, "keep-yearly", 0, "keep the newest backup of each of the last N years")
	f.StringVar(&window, "pitr-window", "", "keep every point of this recent window restorable (e.g. 14d, 36h)")
	f.BoolVar(&dryRun, "dry-run", false, "print what would be deleted, delete nothing")
	f.BoolVar(&asJSON, "json", false, "print machine-readable JSON")
	return cmd
}

func (a *app) printExpire(res *archive.ExpireResult, p archive.Policy, asJSON bool) error {
	if asJSON {
		type decision struct {
			ID       string    `json:"id"`
			Finished time.Time `json:"finished"`
			Keep     bool      `json:"keep"`
			Reasons  []string  `json:"reasons,omitempty"`
		}
		out := struct {
			DryRun   bool            `json:"dry_run"`
			Policy   archive.Policy  `json:"policy"`
			Backups  []decision      `json:"backups"`
			Orphans  int             `json:"orphans"`
			Streams  archive.Trimmed `json:"streams"`
			Chunks   archive.Trimmed `json:"chunks"`
			Temp     archive.Trimmed `json:"temp_files"`
			Earliest *time.Time      `json:"earliest_restorable,omitempty"`
		}{DryRun: res.DryRun, Policy: p, Orphans: res.Orphans, Streams: res.Streams, Chunks: res.Chunks, Temp: res.TempFiles}
		for _, d := range res.Decisions {
			out.Backups = append(out.Backups, decision{ID: d.Backup.ID, Finished: d.Backup.Finished, Keep: d.Keep, Reasons: d.Reasons})
		}
		if e, ok := jobs.EarliestKept(res); ok {
			out.Earliest = &e
		}
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	verb := "deleted"
	if res.DryRun {
		verb = "would delete"
		fmt.Fprintln(a.stdout, "dry run: nothing is deleted")
	}
	fmt.Fprintf(a.stdout, "policy: %s\n", p)
	for _, d := range res.Decisions {
		if d.Keep {
			fmt.Fprintf(a.stdout, "  keep    %s  finished %s  (%s)\n", d.Backup.ID, d.Backup.Finished.UTC().Format(time.RFC3339), strings.Join(d.Reasons, ", "))
		} else {
			fmt.Fprintf(a.stdout, "  expire  %s  finished %s\n", d.Backup.ID, d.Backup.Finished.UTC().Format(time.RFC3339))
		}
	}
	fmt.Fprintf(a.stdout, "%s: %d backups, %d leftovers of uncommitted backups, %d stream objects (%s), %d chunk objects (%s), %d temporary files of killed writes (%s)\n",
		verb, len(res.Expired), res.Orphans, res.Streams.Objects, progress.FormatBytes(res.Streams.Bytes), res.Chunks.Objects, progress.FormatBytes(res.Chunks.Bytes),
		res.TempFiles.Objects, progress.FormatBytes(res.TempFiles.Bytes))
	for _, d := range append(res.Streams.Detail, res.Chunks.Detail...) {
		fmt.Fprintf(a.stdout, "  %s\n", d)
	}
	if e, ok := jobs.EarliestKept(res); ok {
		fmt.Fprintf(a.stdout, "recoverable window now starts at %s (end of the oldest kept backup) and runs to the newest archived stream position\n", e.UTC().Format(time.RFC3339))
	}
	return nil
}
