package mysql

import (
	"context"
	"fmt"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/internal/engine"
	myrestore "github.com/tidemark/tidemark/restore/mysql"
)

// target reads the restore target: the common one or --to-gtid/--to-position.
func target(job engine.RestoreJob) (binlog.Target, error) {
	o := job.Options
	switch {
	case job.To.Latest:
		return binlog.Target{Latest: true}, nil
	case !job.To.Time.IsZero():
		return binlog.Target{Time: job.To.Time}, nil
	case o.String("to-gtid") != "":
		return binlog.Target{GTID: o.String("to-gtid")}, nil
	case o.String("to-position") != "":
		p, err := binlog.ParsePosition(o.String("to-position"))
		return binlog.Target{Position: p}, err
	}
	return binlog.Target{}, fmt.Errorf("MySQL/MariaDB restores take --to-time, --to-gtid, --to-position or --latest")
}

// Plan implements engine.Engine.
func (*Engine) Plan(ctx context.Context, job engine.RestoreJob) (*engine.Plan, error) {
	to, err := target(job)
	if err != nil {
		return nil, err
	}
	p, err := myrestore.PlanRestore(ctx, job.Repo, to)
	if err != nil {
		return nil, err
	}
	return plan(p, to), nil
}

func plan(p *myrestore.Plan, to binlog.Target) *engine.Plan {
	return &engine.Plan{Backup: archive.SummaryOf(p.Backup), From: p.From.String(), To: to.String(), Skipped: p.Skipped,
		Lines:  []string{fmt.Sprintf("binlog from %s (the base's snapshot, %s) to %s", p.From, p.Meta.SnapshotTime.Format(time.RFC3339), to)},
		Detail: map[string]any{"from": p.From.String(), "to": to.String()}}
}

// Restore implements engine.Engine.
func (*Engine) Restore(ctx context.Context, job engine.RestoreJob) (*engine.RestoreReport, error) {
	o := job.Options
	to, err := target(job)
	if err != nil {
		return nil, err
	}
	pw, err := password(o)
	if err != nil {
		return nil, err
	}
	res, err := myrestore.Restore(ctx, myrestore.Config{Repo: job.Repo, Target: o.String("target"), Password: pw, To: to, Jobs: job.Jobs,
		Databases: o.Strings("databases"), Force: o.Bool("force"), LoadMethod: o.String("load-method"), Log: job.Log,
		Progress: func(done, total int64) {
			job.Report(engine.Step{Phase: "restore", Unit: "bytes", Done: done, Total: total})
		},
		ReplayProgress: func(n, total int64) {
			job.Report(engine.Step{Phase: "replay", Unit: "binlog events", Done: n, Total: total})
		}})
	if err != nil {
		return nil, err
	}
	rep := &engine.RestoreReport{Plan: *plan(res.Plan, to), Detail: map[string]any{"tables": res.Tables, "rows": res.Rows,
		"load_seconds": res.LoadTime.Seconds(), "load_method": res.LoadMethod, "replay_seconds": res.ReplayTime.Seconds()}}
	line := fmt.Sprintf("restored backup %s (consistent at %s): %d tables, %d rows in %.1fs", res.Plan.Backup.ID,
		res.Plan.From, res.Tables, res.Rows, res.LoadTime.Seconds())
	if res.IndexTime > 0 {
		line += fmt.Sprintf(" (%.1fs of it building secondary indexes)", res.IndexTime.Seconds())
	}
	rep.Lines = append(rep.Lines, line)
	if rp := res.Replay; rp != nil {
		line := fmt.Sprintf("binlog replayed to %s: %d transactions, %d events in %.1fs; stopped at %s", to, rp.Transactions, rp.Events,
			res.ReplayTime.Seconds(), rp.End)
		if !rp.LastTime.IsZero() {
			line += ", last commit " + rp.LastTime.UTC().Format(time.RFC3339)
		}
		rep.Lines = append(rep.Lines, line)
		rep.Detail["transactions"], rep.Detail["events"], rep.Detail["stopped_at"] = rp.Transactions, rp.Events, rp.End.String()
		rep.Plan.To = rp.End.String()
	}
	return rep, nil
}

// Verify implements engine.Engine: the archived binlog streams read back
// (event checksums, positions, counts against the index) with their
// breaks, and every base rolled forward on paper.
func (*Engine) Verify(ctx context.Context, repo *archive.Repository) ([]string, error) {
	_, problems, err := binlog.Verify(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("verify binlog: %w", err)
	}
	out := make([]string, 0, len(problems))
	for _, p := range problems {
		out = append(out, "binlog: "+p.Error())
	}
	bases, err := myrestore.VerifyBases(ctx, repo)
	if err != nil {
		return nil, err
	}
	return append(out, bases...), nil
}

// Trim implements engine.Engine: binlog segments from before the oldest
// kept backup go, from every server's stream. After a failover the oldest
// backup pairs with the promoted server's stream, and the old primary's
// is no kept backup's own, but its segments are just as old.
func (*Engine) Trim(ctx context.Context, repo *archive.Repository, oldest archive.BackupSummary, dryRun bool) (archive.Trimmed, error) {
	var all archive.Trimmed
	if oldest.Stream == "" {
		return all, nil
	}
	names, err := repo.Streams(ctx, binlog.StreamPrefix)
	if err != nil {
		return all, fmt.Errorf("list binlog streams: %w", err)
	}
	for _, name := range names {
		b := oldest
		b.Stream = name
		t, err := repo.TrimBefore(ctx, b, dryRun)
		all.Objects, all.Bytes, all.Detail = all.Objects+t.Objects, all.Bytes+t.Bytes, append(all.Detail, t.Detail...)
		if err != nil {
			return all, err
		}
	}
	return all, nil
}

// BinlogDetail is what status shows of one binlog stream beyond the
// common shape: positions, GTIDs, files, event times, breaks.
type BinlogDetail struct {
	binlog.StreamSummary
	StartGTID string `json:"start_gtid,omitempty"`
	EndGTID   string `json:"end_gtid,omitempty"`
}

// Status implements engine.Engine: per binlog stream, the archived range
// (positions, GTIDs, files, event times) and its breaks.
func (e *Engine) Status(ctx context.Context, repo *archive.Repository) ([]engine.StreamStatus, error) {
	sums, err := binlog.Summarize(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("binlog status: %w", err)
	}
	var out []engine.StreamStatus
	for _, s := range sums {
		st := engine.StreamStatus{Engine: e.Info().Name, Stream: s.Stream, Position: s.End, Gaps: append([]string{}, s.Breaks...),
			Continues: binlog.Continues(sums, s.Stream)}
		if !s.LastTime.IsZero() {
			t := s.LastTime.UTC()
			st.Latest = &t
		}
		detail := BinlogDetail{StreamSummary: s}
		if p, err := binlog.ParsePosition(s.Start); err == nil {
			detail.StartGTID = p.GTID
		}
		if p, err := binlog.ParsePosition(s.End); err == nil {
			detail.EndGTID = p.GTID
		}
		st.Detail = detail
		st.Lines = append(st.Lines, fmt.Sprintf("binlog      %s: %s – %s, %d files (%s … %s), %d events, %s – %s", s.Stream, s.Start, s.End,
			len(s.Files), first(s.Files), last(s.Files), s.Events, s.FirstTime.UTC().Format(time.RFC3339), s.LastTime.UTC().Format(time.RFC3339)))
		out = append(out, st)
	}
	return out, nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}
