package mongodb

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/oplog"
)

// reorderWindow is how far (in ts seconds) an entry may arrive after a
// later one and still be replayed in order: FerretDB's late entries (see
// oplog/ferretdb.go) arrive within the tailer's overlap. MongoDB's arrive
// in order and pass straight through.
const reorderWindow = 3

// replay replays the plan's segments: entries after From through To
// (and, for a time target, written at or before it), in ts order, each
// once.
func replay(ctx context.Context, cfg Config, plan *Plan, c *mongo.Client, include func(string) bool, res *Result) error {
	a := newApplier(ctx, c, plan.Flavour, cfg.Jobs, include, cfg.Log)
	r := &reorder{seen: map[string]oplog.TS{}}
	total := plannedEntries(plan)
	apply := func(e oplog.Entry) error {
		if err := a.apply(e); err != nil {
			return err
		}
		res.Last, res.LastTime = e.TS, e.Wall
		// Writes complete in the workers: report what they have done
		// (the progress line throttles), never a count kept at 0.
		cfg.Progress("replay", a.applied.Load(), total)
		return nil
	}
	err := func() error {
		var covered uint64 // sequence numbers read so far
		after := plan.From
		for _, s := range plan.Segments {
			if s.Last <= covered {
				continue // read as part of a consolidated segment
			}
			err := r.segment(ctx, cfg, plan, s, after, apply)
			if errors.Is(err, archive.ErrNotExist) {
				// The streamer consolidated it meanwhile: read the segment
				// that replaced it, skipping what was already replayed
				// (older than the reorder window by ts, newer by key).
				if s, err = consolidated(ctx, cfg, s); err == nil {
					err = r.segment(ctx, cfg, plan, s, after, apply)
				}
			}
			if err != nil {
				return err
			}
			covered = s.Last
			if end, err := oplog.ParseTS(s.End); err == nil && end.T > 2*reorderWindow {
				after = maxTS(plan.From, oplog.TS{T: end.T - 2*reorderWindow})
			}
		}
		for r.Len() > 0 {
			if err := apply(heap.Pop(r).(oplog.Entry)); err != nil {
				return err
			}
		}
		return nil
	}()
	if cerr := a.close(); err == nil {
		err = cerr
	}
	res.Ops = a.applied.Load()
	cfg.Progress("replay", res.Ops, max(total, res.Ops))
	if err != nil {
		return fmt.Errorf("replay the oplog: %w", err)
	}
	return nil
}

// plannedEntries estimates the entries to replay from the segments'
// counts (the first and last segments may hold some outside the range).
func plannedEntries(plan *Plan) int64 {
	var n int64
	for _, s := range plan.Segments {
		if s.Events > 0 {
			n += s.Events
		} else {
			n += int64(s.Last - s.First + 1)
		}
	}
	return n
}

// reorder is a min-heap of entries by ts with de-duplication by key.
type reorder struct {
	entries []oplog.Entry
	seen    map[string]oplog.TS
	newest  oplog.TS
}

func (r *reorder) Len() int           { return len(r.entries) }
func (r *reorder) Less(i, j int) bool { return r.entries[i].TS.Less(r.entries[j].TS) }
func (r *reorder) Swap(i, j int)      { r.entries[i], r.entries[j] = r.entries[j], r.entries[i] }
func (r *reorder) Push(x any)         { r.entries = append(r.entries, x.(oplog.Entry)) }
func (r *reorder) Pop() any {
	e := r.entries[len(r.entries)-1]
	r.entries = r.entries[:len(r.entries)-1]
	return e
}

func (r *reorder) segment(ctx context.Context, cfg Config, plan *Plan, s archive.SegmentInfo, after oplog.TS, apply func(oplog.Entry) error) error {
	rc, err := cfg.Repo.OpenSegment(ctx, s)
	if err != nil {
		return err
	}
	defer rc.Close()
	sr := oplog.NewSegmentReader(rc)
	for {
		e, err := sr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("segment %s %d-%d: %w", s.Stream, s.First, s.Last, err)
		}
		if !after.Less(e.TS) || outside(cfg.To, plan.To, e) {
			continue
		}
		if _, dup := r.seen[e.Key]; dup {
			continue
		}
		r.seen[e.Key] = e.TS
		heap.Push(r, e)
		if r.newest.Less(e.TS) {
			r.newest = e.TS
		}
		for r.Len() > 0 && r.entries[0].TS.T+reorderWindow < r.newest.T {
			if err := apply(heap.Pop(r).(oplog.Entry)); err != nil {
				return err
			}
		}
		if len(r.seen) > 100000 {
			r.prune()
		}
	}
}

// consolidated finds the segment that now holds s's sequence numbers.
func consolidated(ctx context.Context, cfg Config, s archive.SegmentInfo) (archive.SegmentInfo, error) {
	chain, err := cfg.Repo.ReadStream(ctx, s.Stream)
	if err != nil {
		return s, err
	}
	for _, c := range chain.Segments {
		if c.First <= s.First && s.First <= c.Last {
			return c, nil
		}
	}
	return s, fmt.Errorf("segment %s %d-%d is gone and nothing replaced it: %w", s.Stream, s.First, s.Last, archive.ErrCorrupt)
}

func maxTS(a, b oplog.TS) oplog.TS {
	if a.Less(b) {
		return b
	}
	return a
}

// prune forgets keys too old to recur.
func (r *reorder) prune() {
	for k, ts := range r.seen {
		if ts.T+2*reorderWindow < r.newest.T {
			delete(r.seen, k)
		}
	}
}

// outside reports an entry past the target: for a time target by its
// wall clock alone (a late FerretDB entry can carry a ts past the segment
// that TimeTS chose while written before the target time), else by ts.
func outside(to Target, toTS oplog.TS, e oplog.Entry) bool {
	if !to.Time.IsZero() {
		return entryTime(e).After(to.Time)
	}
	return toTS.Less(e.TS)
}

func entryTime(e oplog.Entry) time.Time {
	if !e.Wall.IsZero() {
		return e.Wall
	}
	return time.Unix(int64(e.TS.T), 0)
}
