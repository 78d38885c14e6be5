package mongodb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/oplog"
	mgrestore "github.com/tidemark/tidemark/restore/mongodb"
)

// target reads the restore target: the common one or --to-ts.
func target(job engine.RestoreJob) (mgrestore.Target, error) {
	to := mgrestore.Target{Latest: job.To.Latest, Time: job.To.Time}
	if s := job.Options.String("to-ts"); s != "" {
		ts, err := oplog.ParseTS(s)
		if err != nil {
			return to, fmt.Errorf("--to-ts: %w", err)
		}
		to.TS = ts
	}
	return to, nil
}

// Plan implements engine.Engine.
func (*Engine) Plan(ctx context.Context, job engine.RestoreJob) (*engine.Plan, error) {
	to, err := target(job)
	if err != nil {
		return nil, err
	}
	p, err := mgrestore.PlanRestore(ctx, job.Repo, to)
	if err != nil {
		return nil, err
	}
	return plan(p), nil
}

func plan(p *mgrestore.Plan) *engine.Plan {
	return &engine.Plan{Backup: p.Backup, From: p.From.String(), To: p.To.String(), Skipped: p.Skipped,
		Lines:  []string{fmt.Sprintf("oplog after %s through %s (%d segments, %s)", p.From, p.To, len(p.Segments), p.Flavour)},
		Detail: map[string]any{"from_ts": p.From.String(), "to_ts": p.To.String(), "segments": len(p.Segments), "flavour": p.Flavour}}
}

// Restore implements engine.Engine.
func (*Engine) Restore(ctx context.Context, job engine.RestoreJob) (*engine.RestoreReport, error) {
	o := job.Options
	to, err := target(job)
	if err != nil {
		return nil, err
	}
	dst, err := withPassword(o.String("target"), o)
	if err != nil {
		return nil, err
	}
	started := time.Now()
	res, err := mgrestore.Restore(ctx, mgrestore.Config{Repo: job.Repo, TargetURL: dst, To: to, Namespaces: o.Strings("ns"),
		Force: o.Bool("force"), Jobs: job.Jobs, Log: job.Log,
		Progress: func(phase string, n, total int64) {
			unit := "entries"
			if phase == "load" {
				unit = "documents"
			}
			job.Report(engine.Step{Phase: phase, Unit: unit, Done: n, Total: total})
		}})
	if err != nil {
		return nil, err
	}
	p := res.Plan
	rep := &engine.RestoreReport{Plan: *plan(p), Detail: map[string]any{"collections": res.Collections, "documents": res.Documents,
		"ops": res.Ops, "last_ts": res.Last.String()}}
	rep.Lines = append(rep.Lines, fmt.Sprintf("restored backup %s (%d collections, %d documents) and replayed %d oplog operations %s – %s in %.1fs (load %.1fs, replay %.1fs)",
		p.Backup.ID, res.Collections, res.Documents, res.Ops, p.From, p.To, time.Since(started).Seconds(), res.LoadTime.Seconds(), res.ReplayTime.Seconds()))
	rep.Detail["load_seconds"], rep.Detail["replay_seconds"] = res.LoadTime.Seconds(), res.ReplayTime.Seconds()
	if !res.Last.IsZero() {
		rep.Lines = append(rep.Lines, fmt.Sprintf("target %s: last replayed entry %s written %s", to, res.Last, res.LastTime.UTC().Format(time.RFC3339Nano)))
	} else {
		rep.Lines = append(rep.Lines, fmt.Sprintf("target %s: the base itself (no oplog entries after its start)", to))
	}
	return rep, nil
}

// Verify implements engine.Engine.
func (*Engine) Verify(ctx context.Context, repo *archive.Repository) ([]string, error) {
	return mgrestore.VerifyOplog(ctx, repo)
}

// Trim implements engine.Engine: oplog segments from before the oldest
// kept backup go.
func (*Engine) Trim(ctx context.Context, repo *archive.Repository, oldest archive.BackupSummary, dryRun bool) (archive.Trimmed, error) {
	return repo.TrimBefore(ctx, oldest, dryRun)
}

// OplogDetail is what status shows of the archived oplog beyond the
// common shape: its continuous spans (a restore reaches any point inside
// one from a base within it) and the breaks between them.
type OplogDetail struct {
	Flavour string      `json:"flavour"`
	Spans   []OplogSpan `json:"spans"`
	Breaks  []string    `json:"breaks"`
}

// OplogSpan is a continuous run of archived oplog.
type OplogSpan struct {
	Start     string    `json:"start_ts"`
	End       string    `json:"end_ts"`
	FirstTime time.Time `json:"first_time"`
	LastTime  time.Time `json:"last_time"`
}

// Status implements engine.Engine.
func (e *Engine) Status(ctx context.Context, repo *archive.Repository) ([]engine.StreamStatus, error) {
	src, err := repo.Source(ctx)
	if errors.Is(err, archive.ErrNotExist) {
		return nil, nil
	}
	if err != nil || src.Engine != oplog.Engine {
		return nil, err
	}
	name := oplog.StreamName(src.Details["set_name"])
	chain, err := repo.ReadStream(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(chain.Segments) == 0 {
		return nil, nil
	}
	spans, err := oplog.Spans(chain)
	if err != nil {
		return nil, err
	}
	d := OplogDetail{Flavour: src.Details["flavour"], Spans: []OplogSpan{}, Breaks: []string{}}
	s := engine.StreamStatus{Engine: e.Info().Name, Stream: name, Gaps: []string{}, ReachesCaughtUp: true}
	for _, sp := range spans {
		d.Spans = append(d.Spans, OplogSpan{Start: sp.Start.String(), End: sp.End.String(), FirstTime: sp.FirstTime.UTC(), LastTime: sp.LastTime.UTC()})
		s.Lines = append(s.Lines, fmt.Sprintf("oplog       %s (%s): %s (%s) – %s (%s)", name, d.Flavour, sp.Start,
			sp.FirstTime.UTC().Format(time.RFC3339), sp.End, sp.LastTime.UTC().Format(time.RFC3339)))
	}
	for _, b := range chain.Breaks {
		d.Breaks = append(d.Breaks, b.String())
		s.Gaps = append(s.Gaps, b.String())
	}
	last := chain.Segments[len(chain.Segments)-1]
	s.Position = last.End
	if !last.LastTime.IsZero() {
		t := last.LastTime.UTC()
		s.Latest = &t
	}
	s.Detail = d
	return []engine.StreamStatus{s}, nil
}
