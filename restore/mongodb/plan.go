package mongodb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tidemark/tidemark/archive"
	mongobackup "github.com/tidemark/tidemark/basebackup/mongodb"
	"github.com/tidemark/tidemark/oplog"
	"github.com/tidemark/tidemark/restore"
)

// Target is where a MongoDB restore stops: exactly one of Latest, TS
// (through that oplog entry) or Time (through entries written at or
// before it).
type Target struct {
	Latest bool
	TS     oplog.TS
	Time   time.Time
}

func (t Target) String() string {
	switch {
	case t.Latest:
		return "latest"
	case !t.TS.IsZero():
		return "ts " + t.TS.String()
	default:
		return "time " + t.Time.UTC().Format(time.RFC3339Nano)
	}
}

// Plan is what a restore will do, decided before anything is written.
type Plan struct {
	Backup   archive.BackupSummary
	Meta     mongobackup.Meta
	Flavour  string
	From, To oplog.TS // replay entries after From through To
	Segments []archive.SegmentInfo
	Window   []oplog.Span
	// Skipped names newer bases passed over as unusable, and why.
	Skipped []string
}

// PlanRestore picks the newest base that can reach the target and checks
// the archived oplog is continuous from its start to the target.
func PlanRestore(ctx context.Context, repo *archive.Repository, to Target) (*Plan, error) {
	src, err := repo.Source(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the repository's source: %w", err)
	}
	flavour, err := oplog.FlavourOf(src)
	if err != nil {
		return nil, err
	}
	chain, err := repo.ReadStream(ctx, oplog.StreamName(src.Details["set_name"]))
	if err != nil {
		return nil, err
	}
	spans, err := oplog.Spans(chain)
	if err != nil {
		return nil, err
	}
	p := &Plan{Flavour: flavour, Window: spans}
	window := func() string {
		if len(spans) == 0 {
			return "no oplog is archived"
		}
		var s []string
		for _, sp := range spans {
			s = append(s, sp.String())
		}
		return "archived oplog: " + strings.Join(s, ", ")
	}
	switch {
	case to.Latest:
		if len(spans) == 0 {
			return nil, fmt.Errorf("%w: %s", restore.ErrUnreachable, window())
		}
		p.To = spans[len(spans)-1].End
	case !to.TS.IsZero():
		p.To = to.TS
	default:
		ts, ok := oplog.TimeTS(chain, to.Time)
		if !ok {
			ts, ok, err = caughtUpThrough(ctx, repo, spans, to.Time)
			if err != nil {
				return nil, err
			}
		}
		if !ok {
			return nil, fmt.Errorf("%w: nothing archived was written at or after %s; %s", restore.ErrUnreachable, to.Time.UTC().Format(time.RFC3339Nano), window())
		}
		p.To = ts
	}
	bases, err := restore.Bases(ctx, repo, oplog.Engine)
	if err != nil {
		return nil, err
	}
	chosen, skipped, err := restore.PassOver(bases, func(bases []archive.BackupSummary) (*archive.BackupSummary, error) {
		var chosen *archive.BackupSummary
		for i, b := range bases {
			stop, err := oplog.ParseTS(b.Stop)
			if err != nil {
				return nil, fmt.Errorf("backup %s: stop %q: %w", b.ID, b.Stop, archive.ErrCorrupt)
			}
			if p.To.Less(stop) || (!to.Time.IsZero() && to.Time.Before(b.Finished)) {
				continue
			}
			chosen = &bases[i]
		}
		if chosen == nil {
			return nil, fmt.Errorf("%w: no MongoDB base backup ends at or before %s (%d backups)", restore.ErrUnreachable, to, len(bases))
		}
		// The restore reads the manifest; an unusable one is passed over now.
		_, err := restore.ReadBase(ctx, repo, chosen.ID)
		return chosen, err
	})
	if err != nil {
		return nil, err
	}
	p.Backup, p.Skipped = *chosen, skipped
	if p.From, err = oplog.ParseTS(p.Backup.Start); err != nil {
		return nil, fmt.Errorf("backup %s: start %q: %w", p.Backup.ID, p.Backup.Start, archive.ErrCorrupt)
	}
	p.Segments, err = oplog.Range(chain, p.From, p.To)
	if errors.Is(err, oplog.ErrMissing) {
		return nil, fmt.Errorf("%w: from backup %s (oplog %s) to %s: %w", restore.ErrGap, p.Backup.ID, p.From, to, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: from backup %s (oplog %s) to %s: %w; %s", restore.ErrUnreachable, p.Backup.ID, p.From, to, err, window())
	}
	return p, nil
}

// caughtUpThrough: a time after the newest archived entry is still
// reachable when the streamer said, in its heartbeat, that the archive
// held everything the server had written at that time or later: nothing
// was written in between (an idle source), so the state at t is the one
// after the newest entry.
func caughtUpThrough(ctx context.Context, repo *archive.Repository, spans []oplog.Span, t time.Time) (oplog.TS, bool, error) {
	if len(spans) == 0 {
		return oplog.TS{}, false, nil
	}
	beats, err := repo.Heartbeats(ctx)
	if err != nil {
		return oplog.TS{}, false, err
	}
	for _, h := range beats {
		if h.Engine == oplog.Engine && h.CaughtUp != nil && !h.CaughtUp.Before(t) {
			return spans[len(spans)-1].End, true, nil
		}
	}
	return oplog.TS{}, false, nil
}
