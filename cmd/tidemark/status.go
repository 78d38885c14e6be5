package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/restore"
	"github.com/tidemark/tidemark/wal"
)

type statusReport struct {
	Repository  string                  `json:"repository"`
	ID          string                  `json:"id"`
	Created     string                  `json:"created"`
	Encryption  string                  `json:"encryption"`
	Recipients  []string                `json:"recipients,omitempty"`
	Compression string                  `json:"compression"`
	Source      *archive.Source         `json:"source,omitempty"`
	Recoverable []recoverableStatus     `json:"recoverable"`
	WAL         []walStatus             `json:"wal,omitempty"`
	Streams     []streamStatus          `json:"streams,omitempty"`
	Binlog      []binlogStatus          `json:"binlog,omitempty"`
	Oplog       *oplogStatus            `json:"oplog,omitempty"`
	Gaps        []archive.GapRecord     `json:"gaps"`
	Backups     []archive.BackupSummary `json:"backups"`
	LastVerify  *verifyReport           `json:"last_verify,omitempty"`
	LastDrill   *restore.DrillReport    `json:"last_drill,omitempty"`
	Areas       map[string]areaUsage    `json:"areas"`
	Total       areaUsage               `json:"total"`
}

type walStatus struct {
	Timeline  uint32   `json:"timeline"`
	Start     string   `json:"start_lsn"`
	End       string   `json:"end_lsn"`
	Complete  int      `json:"complete_segments"`
	Partial   int      `json:"partial_segments"`
	LastWrite string   `json:"last_write"`
	Gaps      []string `json:"gaps"`
}

type areaUsage struct {
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
}

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
repository stores. Needs no key: it reads only unencrypted bookkeeping.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := rf.open(ctx, false)
			if err != nil {
				return err
			}
			cfg := r.Config()
			rep := statusReport{Repository: r.Store().Location(), ID: cfg.ID, Created: cfg.Created.Format("2006-01-02 15:04:05Z07:00"),
				Encryption: cfg.Encryption, Recipients: cfg.Recipients, Compression: cfg.Compression, Areas: map[string]areaUsage{}}
			err = r.Store().List(ctx, "", "", func(o archive.ObjectInfo) error {
				area := o.Name
				if i := strings.IndexByte(area, '/'); i >= 0 {
					area = area[:i]
				}
				u := rep.Areas[area]
				u.Objects++
				u.Bytes += o.Size
				rep.Areas[area] = u
				rep.Total.Objects++
				rep.Total.Bytes += o.Size
				return nil
			})
			if err != nil {
				return err
			}
			if rep.Backups, err = backupsForStatus(ctx, r); err != nil {
				return err
			}
			if rep.Source, rep.WAL, err = sourceStatus(ctx, r); err != nil {
				return err
			}
			if rep.Streams, err = changeStreams(ctx, r); err != nil {
				return err
			}
			if rep.Binlog, err = mysqlStatus(ctx, r); err != nil {
				return err
			}
			if rep.Gaps, err = r.Gaps(ctx); err != nil {
				return err
			}
			if rep.Oplog, err = mongoStatus(ctx, r); err != nil {
				return err
			}
			if rep.LastVerify, rep.LastDrill, err = lastReports(ctx, r); err != nil {
				return err
			}
			rep.Recoverable = recoverable(time.Now(), rep.Backups, rep.WAL, rep.Streams, rep.Gaps)
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			a.printStatus(&rep)
			return nil
		},
	}
	rf.register(cmd, false)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print machine-readable JSON")
	return cmd
}

func (a *app) printStatus(rep *statusReport) {
	w := a.stdout
	fmt.Fprintf(w, "repository  %s\nid          %s (created %s, encryption %s, compression %s)\n",
		rep.Repository, rep.ID, rep.Created, rep.Encryption, rep.Compression)
	if rep.Source != nil {
		fmt.Fprintf(w, "source      %s cluster %s\n", rep.Source.Engine, rep.Source.ClusterID)
	}
	if len(rep.Recoverable) == 0 {
		fmt.Fprintf(w, "recoverable nothing yet: no stream archived\n")
	}
	for _, rs := range rep.Recoverable {
		switch {
		case rs.Earliest == nil:
			fmt.Fprintf(w, "recoverable %s: NOTHING — no base backup yet (stream at %s)\n", rs.Stream, rs.Position)
		case rs.Latest == nil:
			fmt.Fprintf(w, "recoverable %s: NOTHING — stream empty\n", rs.Stream)
		default:
			fmt.Fprintf(w, "recoverable %s: %s → %s (newest change %s ago, at %s)\n", rs.Stream, rs.Earliest.Format(time.RFC3339),
				rs.Latest.Format(time.RFC3339), (time.Duration(rs.AgeSec) * time.Second).String(), rs.Position)
		}
		for _, g := range rs.Gaps {
			fmt.Fprintf(w, "GAP         %s\n", g)
		}
	}
	fmt.Fprintf(w, "backups     %d\n", len(rep.Backups))
	for _, b := range rep.Backups {
		if b.Finished.IsZero() {
			fmt.Fprintf(w, "  %s (summary needs the key)\n", b.ID)
			continue
		}
		fmt.Fprintf(w, "  %-28s %-12s finished %s  %10s logical  %10s new\n", b.ID, b.Type,
			b.Finished.UTC().Format(time.RFC3339), humanBytes(b.Logical), humanBytes(b.NewStored))
	}
	if v := rep.LastVerify; v != nil {
		fmt.Fprintf(w, "last verify %s %s: %d objects, %d problems, %.1fs\n", v.Started.UTC().Format(time.RFC3339), okWord(v.OK), v.Objects, v.Problems, v.Seconds)
	}
	if d := rep.LastDrill; d != nil {
		fmt.Fprintf(w, "last drill  %s %s: RTO %.1fs, %d tables, %d rows, %d indexes checked, %d problems\n", d.Started.UTC().Format(time.RFC3339),
			okWord(d.OK), d.RTOSeconds, d.Tables, d.Rows, d.IndexesChecked, d.Problems)
	}
	printMySQLStatus(w, rep.Binlog)
	if rep.Oplog != nil {
		rep.Oplog.print(w)
	}
	for _, s := range rep.Streams {
		if strings.HasPrefix(s.Stream, "binlog") || (rep.Oplog != nil && s.Stream == rep.Oplog.Stream) {
			continue // shown with its engine's details above
		}
		fmt.Fprintf(w, "stream      %s: %s – %s, %d segments, %d events, %s; %s – %s\n", s.Stream, s.Start, s.End, s.Segments, s.Events,
			humanBytes(s.Bytes), s.FirstTime.UTC().Format(time.RFC3339), s.LastTime.UTC().Format(time.RFC3339))
	}
	for _, wl := range rep.WAL {
		fmt.Fprintf(w, "wal         timeline %d: %s – %s, %d complete + %d partial segments, last write %s\n",
			wl.Timeline, wl.Start, wl.End, wl.Complete, wl.Partial, wl.LastWrite)
	}
	for _, g := range rep.Gaps {
		if len(rep.Recoverable) > 0 {
			break // shown with their windows
		}
		fmt.Fprintf(w, "GAP         %s stream stopped at %s (%s): %s\n", g.Engine, g.From, g.Detected.Format(time.RFC3339), g.Reason)
	}
	areas := make([]string, 0, len(rep.Areas))
	for k := range rep.Areas {
		areas = append(areas, k)
	}
	sort.Strings(areas)
	for _, k := range areas {
		fmt.Fprintf(w, "  %-10s %8d objects %12s\n", k, rep.Areas[k].Objects, humanBytes(rep.Areas[k].Bytes))
	}
	fmt.Fprintf(w, "  %-10s %8d objects %12s\n", "total", rep.Total.Objects, humanBytes(rep.Total.Bytes))
}

func okWord(ok bool) string {
	if ok {
		return "OK"
	}
	return "FAILED"
}

// sourceStatus describes the bound source and, for PostgreSQL, the WAL
// archive per timeline.
func sourceStatus(ctx context.Context, r *archive.Repository) (*archive.Source, []walStatus, error) {
	src, err := r.Source(ctx)
	if errors.Is(err, archive.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil || src.Engine != "postgres" {
		return src, nil, err
	}
	g, err := wal.RepoGeometry(ctx, r)
	if err != nil {
		return src, nil, err
	}
	st, err := wal.LoadState(ctx, r.Store(), g)
	if err != nil {
		return src, nil, err
	}
	var out []walStatus
	for _, tl := range st.Timelines {
		w := walStatus{Timeline: tl.TLI, Start: tl.Start.String(), End: tl.End.String(), Complete: tl.Complete,
			Partial: tl.Partial, LastWrite: tl.LastWrite.UTC().Format(time.RFC3339), Gaps: []string{}}
		for _, g := range tl.Gaps {
			w.Gaps = append(w.Gaps, g.String())
		}
		out = append(out, w)
	}
	return src, out, nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
