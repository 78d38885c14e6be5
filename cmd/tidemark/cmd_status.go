package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/internal/jobs"
	"github.com/tidemark/tidemark/internal/progress"
)

func (a *app) statusCmd() *cobra.Command {
	var (
		rf     repoFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status --repo URL [--json]",
		Short: "Show what a repository holds",
		Long: `Show what can be restored — the recoverable window per stream (from the
end of the oldest base backup to the newest archived change, with any gaps)
and how old the newest change is — then the base backups with their sizes,
the streams' positions, the last verify and drill, and what each area of the
repository stores. Needs no key: it reads only unencrypted bookkeeping.

The streamer line says what each engine's streamer last recorded in its
heartbeat, led by its health: ALIVE (streaming, changes arriving), IDLE
(streaming and caught up, no change for 5 minutes) or DOWN — reconnecting
(with the error), stopped (and why), or silent: no heartbeat for three of
its intervals, so it is not running or cannot write to the repository (a
full disk, lost credentials). The RPO is measured as the agent's
stream_rpo_seconds gauge measures it: since the streamer last held
everything the server had written.

Running lines are backups, restores, verifies and drills in progress, from
any host, with how far they got; one whose process died shows as
ABANDONED.

--json: "streams" lists one entry per archived stream of every engine in
one shape (engine, stream, earliest, latest, recoverable_to, position,
age_seconds, caught_up_at, rpo_seconds, gaps, heartbeat) with the engine's own "detail";
"streamers" the heartbeats with their age, whether they are stale, their
health and a summary; "operations" the running operations with their
phase, done, total, percent and whether they are abandoned; "backups" each
backup with its start and stop positions and times.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := rf.open(ctx, false, a.log)
			if err != nil {
				return err
			}
			rep, err := jobs.Status(ctx, a.engines, r, time.Now())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			a.printStatus(rep)
			return nil
		},
	}
	rf.register(cmd, false)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print machine-readable JSON")
	return cmd
}

func (a *app) printStatus(rep *jobs.StatusReport) {
	w := a.stdout
	fmt.Fprintf(w, "repository  %s\nid          %s (created %s, encryption %s, compression %s)\n",
		rep.Repository, rep.ID, rep.Created, rep.Encryption, rep.Compression)
	if rep.Source != nil {
		fmt.Fprintf(w, "source      %s cluster %s\n", rep.Source.Engine, rep.Source.ClusterID)
	}
	if len(rep.Streams) == 0 {
		fmt.Fprintf(w, "recoverable nothing yet: no stream archived\n")
	}
	for _, s := range rep.Streamers {
		fmt.Fprintf(w, "streamer    %s: %s\n", strings.ToUpper(s.Health), s.Summary)
	}
	for _, o := range rep.Operations {
		fmt.Fprintf(w, "running     %s\n", o.Summary)
	}
	for _, s := range rep.Warnings {
		fmt.Fprintf(w, "WARNING     %s\n", s)
	}
	for _, s := range rep.Streams {
		switch {
		case s.Earliest == nil:
			fmt.Fprintf(w, "recoverable %s: NOTHING — no base backup yet (stream at %s)\n", s.Stream, s.Position)
		case s.Latest == nil:
			fmt.Fprintf(w, "recoverable %s: NOTHING — stream empty\n", s.Stream)
		default:
			fmt.Fprintf(w, "recoverable %s: %s → %s (newest change %s ago, at %s)\n", s.Stream, s.Earliest.Format(time.RFC3339),
				s.RecoverableTo.Format(time.RFC3339), ago(s.AgeSec), s.Position)
		}
		if s.Latest != nil {
			rpo := fmt.Sprintf("RPO %s", ago(s.RPOSec))
			if s.CaughtUp != nil {
				rpo += fmt.Sprintf(" (the streamer held everything the server wrote at %s)", s.CaughtUp.Format(time.RFC3339))
			}
			fmt.Fprintf(w, "            %s\n", rpo)
		}
		for _, g := range s.Gaps {
			fmt.Fprintf(w, "GAP         %s\n", g)
		}
	}
	fmt.Fprintf(w, "backups     %d\n", len(rep.Backups))
	for _, b := range rep.Backups {
		if b.Finished.IsZero() {
			fmt.Fprintf(w, "  %s (summary needs the key)\n", b.ID)
			continue
		}
		ratio := "—"
		if r := b.CompressionRatio(); r > 0 {
			ratio = fmt.Sprintf("%.2f:1", r)
		}
		fmt.Fprintf(w, "  %-28s %-12s finished %s  %10s logical  %10s new  compressed %s\n", b.ID, b.Type,
			b.Finished.UTC().Format(time.RFC3339), progress.FormatBytes(b.Logical), progress.FormatBytes(b.NewStored), ratio)
		fmt.Fprintf(w, "  %-28s start %s at %s, stop %s at %s\n", "", orDash(b.Start), b.Started.UTC().Format(time.RFC3339),
			orDash(b.Stop), b.Finished.UTC().Format(time.RFC3339))
	}
	if v := rep.LastVerify; v != nil {
		fmt.Fprintf(w, "last verify %s %s: %d objects, %d problems, %.1fs\n", v.Started.UTC().Format(time.RFC3339), okWord(v.OK), v.Objects, v.Problems, v.Seconds)
	}
	if d := rep.LastDrill; d != nil {
		fmt.Fprintf(w, "last drill  %s %s: RTO %.1fs, %d tables, %d rows, %d indexes checked, %d problems\n", d.Started.UTC().Format(time.RFC3339),
			okWord(d.OK), d.RTOSeconds, d.Tables, d.Rows, d.IndexesChecked, d.Problems)
	}
	for _, s := range rep.Streams {
		for _, l := range s.Lines {
			fmt.Fprintln(w, l)
		}
	}
	if len(rep.Streams) == 0 {
		for _, g := range rep.Gaps {
			fmt.Fprintf(w, "GAP         %s stream stopped at %s (%s): %s\n", g.Engine, g.From, g.Detected.Format(time.RFC3339), g.Reason)
		}
	}
	areas := make([]string, 0, len(rep.Areas))
	for k := range rep.Areas {
		areas = append(areas, k)
	}
	sort.Strings(areas)
	for _, k := range areas {
		fmt.Fprintf(w, "  %-10s %8d objects %12s\n", k, rep.Areas[k].Objects, progress.FormatBytes(rep.Areas[k].Bytes))
	}
	fmt.Fprintf(w, "  %-10s %8d objects %12s\n", "total", rep.Total.Objects, progress.FormatBytes(rep.Total.Bytes))
}

func okWord(ok bool) string {
	if ok {
		return "OK"
	}
	return "FAILED"
}

// ago prints seconds as a duration, to the second.
func ago(sec float64) string {
	return (time.Duration(sec) * time.Second).String()
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
