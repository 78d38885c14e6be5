package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/engine"
	pgrestore "github.com/tidemark/tidemark/restore/postgres"
	"github.com/tidemark/tidemark/wal"
)

// ours reports whether the repository's source is PostgreSQL: the other
// methods find nothing in another engine's repository.
func (e *Engine) ours(ctx context.Context, repo *archive.Repository) (bool, error) {
	src, err := repo.Source(ctx)
	if errors.Is(err, archive.ErrNotExist) {
		return false, nil
	}
	return err == nil && src.Engine == e.Info().Name, err
}

// Verify implements engine.Engine: every base's WAL is archived and the
// WAL after the oldest base has no holes.
func (e *Engine) Verify(ctx context.Context, repo *archive.Repository) ([]string, error) {
	return pgrestore.VerifyWAL(ctx, repo)
}

// Trim implements engine.Engine: WAL segments before the oldest kept
// backup's start go.
func (*Engine) Trim(ctx context.Context, repo *archive.Repository, oldest archive.BackupSummary, dryRun bool) (archive.Trimmed, error) {
	lsn, err := wal.ParseLSN(oldest.Start)
	if err != nil {
		return archive.Trimmed{}, fmt.Errorf("backup %s: start LSN %q: %w", oldest.ID, oldest.Start, archive.ErrCorrupt)
	}
	return wal.Trim(ctx, repo, lsn, dryRun)
}

// WALTimeline is one timeline of the WAL archive, as status shows it.
type WALTimeline struct {
	Timeline  uint32   `json:"timeline"`
	Start     string   `json:"start_lsn"`
	End       string   `json:"end_lsn"`
	Complete  int      `json:"complete_segments"`
	Partial   int      `json:"partial_segments"`
	LastWrite string   `json:"last_write"`
	Gaps      []string `json:"gaps"`
}

// Status implements engine.Engine: the WAL archive, one entry whose
// window ends on the newest timeline, with every timeline as detail.
func (e *Engine) Status(ctx context.Context, repo *archive.Repository) ([]engine.StreamStatus, error) {
	if ok, err := e.ours(ctx, repo); !ok {
		return nil, err
	}
	g, err := wal.RepoGeometry(ctx, repo)
	if err != nil {
		return nil, err
	}
	st, err := wal.LoadState(ctx, repo.Store(), g)
	if err != nil {
		return nil, err
	}
	if len(st.Timelines) == 0 {
		return nil, nil
	}
	s := engine.StreamStatus{Engine: e.Info().Name, Stream: "wal", Gaps: []string{}}
	var tls []WALTimeline
	for _, tl := range st.Timelines {
		w := WALTimeline{Timeline: tl.TLI, Start: tl.Start.String(), End: tl.End.String(), Complete: tl.Complete,
			Partial: tl.Partial, LastWrite: tl.LastWrite.UTC().Format(time.RFC3339), Gaps: []string{}}
		for _, gap := range tl.Gaps {
			w.Gaps = append(w.Gaps, gap.String())
			s.Gaps = append(s.Gaps, gap.String())
		}
		tls = append(tls, w)
		s.Lines = append(s.Lines, fmt.Sprintf("wal         timeline %d: %s – %s, %d complete + %d partial segments, last write %s",
			w.Timeline, w.Start, w.End, w.Complete, w.Partial, w.LastWrite))
	}
	switches, err := timelineSwitches(ctx, repo, st)
	if err != nil {
		return nil, err
	}
	for _, sw := range switches {
		s.Lines = append(s.Lines, "wal         switch "+sw)
	}
	latest := st.Latest() // the newest timeline is where a restore ends
	s.Position = fmt.Sprintf("%s on timeline %d", latest.End, latest.TLI)
	if !latest.LastWrite.IsZero() {
		t := latest.LastWrite.UTC().Truncate(time.Second)
		s.Latest = &t
	}
	s.Detail = map[string]any{"timelines": tls, "switches": switches}
	return []engine.StreamStatus{s}, nil
}

// timelineSwitches describes the archived timeline switches (promotions,
// failovers): exactly from the newest history file when the key is at
// hand (history files are encrypted like WAL), else from the names alone.
func timelineSwitches(ctx context.Context, repo *archive.Repository, st *wal.State) ([]string, error) {
	out := []string{}
	if repo.CanRead() {
		sws, err := wal.Switches(ctx, repo, st)
		if err != nil {
			return nil, err
		}
		for _, sw := range sws {
			out = append(out, sw.String()+" (history archived)")
		}
		return out, nil
	}
	held := map[uint32]bool{}
	for _, t := range st.Histories {
		held[t] = true
	}
	for i := 1; i < len(st.Timelines); i++ {
		prev, tl := st.Timelines[i-1], st.Timelines[i]
		note := "history archived"
		if !held[tl.TLI] {
			note = "its history file is NOT archived"
		}
		out = append(out, fmt.Sprintf("timeline %d → %d near %s (%s)", prev.TLI, tl.TLI, tl.Start, note))
	}
	return out, nil
}
