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
	"github.com/tidemark/tidemark/wal"
)

type statusReport struct {
	Repository  string               `json:"repository"`
	ID          string               `json:"id"`
	Created     string               `json:"created"`
	Encryption  string               `json:"encryption"`
	Recipients  []string             `json:"recipients,omitempty"`
	Compression string               `json:"compression"`
	Source      *archive.Source      `json:"source,omitempty"`
	WAL         []walStatus          `json:"wal,omitempty"`
	Oplog       *oplogStatus         `json:"oplog,omitempty"`
	Gaps        []archive.GapRecord  `json:"gaps"`
	Backups     []string             `json:"backups"`
	Areas       map[string]areaUsage `json:"areas"`
	Total       areaUsage            `json:"total"`
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
		Long: `Show a repository's config, its base backups and what each area of it
stores. Needs no key: it reads only unencrypted bookkeeping.`,
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
			if rep.Backups, err = r.ListManifests(ctx); err != nil {
				return err
			}
			if rep.Source, rep.WAL, err = sourceStatus(ctx, r); err != nil {
				return err
			}
			if rep.Gaps, err = r.Gaps(ctx); err != nil {
				return err
			}
			if rep.Oplog, err = mongoStatus(ctx, r); err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			fmt.Fprintf(a.stdout, "repository  %s\nid          %s\ncreated     %s\nencryption  %s\ncompression %s\nbackups     %d\n",
				rep.Repository, rep.ID, rep.Created, rep.Encryption, rep.Compression, len(rep.Backups))
			if rep.Source != nil {
				fmt.Fprintf(a.stdout, "source      %s cluster %s\n", rep.Source.Engine, rep.Source.ClusterID)
			}
			for _, w := range rep.WAL {
				fmt.Fprintf(a.stdout, "wal         timeline %d: %s – %s, %d complete + %d partial segments, last write %s\n",
					w.Timeline, w.Start, w.End, w.Complete, w.Partial, w.LastWrite)
				for _, g := range w.Gaps {
					fmt.Fprintf(a.stdout, "GAP         %s\n", g)
				}
			}
			if rep.Oplog != nil {
				rep.Oplog.print(a.stdout)
			}
			for _, g := range rep.Gaps {
				fmt.Fprintf(a.stdout, "GAP         %s stream stopped at %s (%s): %s\n", g.Engine, g.From, g.Detected.Format(time.RFC3339), g.Reason)
			}
			areas := make([]string, 0, len(rep.Areas))
			for k := range rep.Areas {
				areas = append(areas, k)
			}
			sort.Strings(areas)
			for _, k := range areas {
				fmt.Fprintf(a.stdout, "  %-10s %8d objects %12s\n", k, rep.Areas[k].Objects, humanBytes(rep.Areas[k].Bytes))
			}
			fmt.Fprintf(a.stdout, "  %-10s %8d objects %12s\n", "total", rep.Total.Objects, humanBytes(rep.Total.Bytes))
			return nil
		},
	}
	rf.register(cmd, false)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print machine-readable JSON")
	return cmd
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
