package binlog

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/tidemark/tidemark/archive"
)

// Txn is one archived transaction (or statement logged on its own) as the
// reader yields it.
type Txn struct {
	Unit
	Format *Format  // describes its events; Format.Raw is the format description event
	Start  Position // where its first event begins
	End    Position // the boundary after it
}

// Reader iterates the archived transactions from a base position to a
// target, in order, whole transactions only.
type Reader struct {
	repo    *archive.Repository
	plan    *plan
	from    Position
	to      Target
	tg      targetGTID
	segIdx  int
	seg     *Segment
	evIdx   int
	pos     Position // boundary reached
	next    uint32   // running offset of the next event
	grp     grouper
	done    bool
	atFrom  bool // the first event at or after from has been seen
	skipped int  // segments passed over unread: they end at the base
	maria   MariaState
	base    MariaState // a GTID-only base: transactions it contains are skipped
}

// NewReader checks coverage (CheckCoverage) and returns a reader from from
// to to. Nothing is read from a segment before Next.
func NewReader(ctx context.Context, repo *archive.Repository, from Position, to Target) (*Reader, error) {
	p, err := planFor(ctx, repo, from, to)
	if err != nil {
		return nil, err
	}
	tg, _ := parseTargetGTID(to.GTID)
	r := &Reader{repo: repo, plan: p, from: from, to: to, tg: tg, pos: from, segIdx: -1}
	if st, err := ParseMariaState(from.GTID); err == nil {
		r.maria = st // MySQL GTID sets are carried as the base's, not advanced
		if from.GTIDOnly() {
			r.base = st.Clone()
		}
	}
	return r, nil
}

// Window is the recoverable window from the reader's base.
func (r *Reader) Window() Window { return r.plan.window }

// Position is the boundary after the last transaction Next returned (the
// base position before the first).
func (r *Reader) Position() Position { return r.pos }

// Next returns the next transaction, or io.EOF once the target is reached.
func (r *Reader) Next(ctx context.Context) (*Txn, error) {
	for !r.done {
		e, err := r.nextEvent(ctx)
		if errors.Is(err, io.EOF) {
			r.done = true
			if r.grp.pending() {
				return nil, fmt.Errorf("%w: the archive ends inside a transaction at %s:%d", ErrCorrupt, r.pos.File, r.next)
			}
			if r.to.GTID != "" {
				return nil, fmt.Errorf("%w: %s was not found before the archive ends at %s", ErrOutsideWindow, r.to, r.pos)
			}
			break
		}
		if err != nil {
			return nil, err
		}
		if !r.atFrom {
			// Events before the base are in the base already.
			if (Position{File: r.pos.File, Pos: e.Start()}).before(Position{File: r.from.File, Pos: r.from.Pos}) {
				if r.pos.File == r.from.File && e.LogPos > r.from.Pos {
					return nil, fmt.Errorf("%w: the base position %s is inside an archived event (%d-%d)", ErrBadPosition, r.from, e.Start(), e.LogPos)
				}
				r.next = e.LogPos
				continue
			}
			if r.pos.File == r.from.File && e.Start() != r.from.Pos && r.from.Pos != 4 {
				return nil, fmt.Errorf("%w: the base position %s is not at an archived event boundary (next event at %d)", ErrBadPosition, r.from, e.Start())
			}
			r.atFrom = true
		}
		if e.Start() != r.next {
			return nil, fmt.Errorf("%w: archived event at %s:%d, expected %d", ErrCorrupt, r.pos.File, e.Start(), r.next)
		}
		r.next = e.LogPos
		prevGTID := r.pos.GTID
		u, err := r.grp.add(r.seg.Format, e)
		if err != nil {
			return nil, err
		}
		if u == nil {
			continue
		}
		if r.base != nil && u.Txn && r.base.Contains(u.Maria) {
			// In the base already: a snapshot entered by GTID holds every
			// transaction up to its position in each domain.
			r.pos = Position{File: r.pos.File, Pos: r.next, GTID: r.pos.GTID}
			continue
		}
		if u.Txn && u.Maria.Seq != 0 && r.maria != nil {
			r.maria[u.Maria.Domain] = u.Maria
			r.pos.GTID = r.maria.String()
		}
		end := Position{File: r.pos.File, Pos: r.next, GTID: r.pos.GTID}
		if !u.Txn {
			if u.Events[0].Type == replication.ROTATE_EVENT {
				body, _ := r.seg.Format.Body(u.Events[0])
				if end.File, end.Pos, err = rotateOf(body); err != nil {
					return nil, err
				}
			}
			r.pos = end
			continue
		}
		start := Position{File: r.pos.File, Pos: u.Events[0].Start(), GTID: prevGTID}
		past, last := r.to.past(u, end, r.tg)
		if past {
			r.done = true
			break
		}
		r.pos = end
		if last {
			r.done = true
		}
		return &Txn{Unit: *u, Format: r.seg.Format, Start: start, End: end}, nil
	}
	return nil, io.EOF
}

// nextEvent returns the next archived event, opening segments in turn.
func (r *Reader) nextEvent(ctx context.Context) (Event, error) {
	for r.seg == nil || r.evIdx >= len(r.seg.Events) {
		r.segIdx++
		if r.segIdx >= len(r.plan.segments) {
			return Event{}, io.EOF
		}
		info := r.plan.segments[r.segIdx]
		if !r.atFrom && r.endsAtBase(info) {
			// Nothing after the base in it: seek past it unread. (A base
			// taken when the stream was idle lies at a segment's end; the
			// segment can be 16 MiB of events the base already holds.)
			r.skipped++
			r.pos = Position{File: r.from.File, Pos: r.from.Pos, GTID: r.pos.GTID}
			if r.from.GTIDOnly() {
				_, end, _ := segRange(info)
				r.pos = Position{File: end.File, Pos: end.Pos, GTID: r.pos.GTID}
			}
			r.next = r.pos.Pos
			continue
		}
		seg, err := readSegment(ctx, r.repo, info)
		if err != nil {
			return Event{}, err
		}
		start, _, err := segRange(info)
		if err != nil {
			return Event{}, err
		}
		if r.seg != nil && r.grp.pending() && (start.File != r.pos.File || r.plan.segments[r.segIdx-1].Stream != info.Stream) {
			return Event{}, fmt.Errorf("%w: a transaction spans files at %s", ErrCorrupt, info.Start)
		}
		r.seg, r.evIdx = seg, 0
		// Another stream (a promoted replica's) has files of its own.
		newStream := r.segIdx > 0 && r.plan.segments[r.segIdx-1].Stream != info.Stream
		if start.File != r.pos.File || r.segIdx == 0 || start.Pos == 4 || newStream {
			r.pos = Position{File: start.File, Pos: start.Pos, GTID: r.pos.GTID}
			r.next = start.Pos
			if r.next == 4 && seg.Format.Raw != nil {
				if fde, _ := parseEvent(seg.Format.Raw); fde.LogPos != 0 {
					r.next = fde.LogPos // the file's own format description is the header
				}
			}
		}
	}
	e := r.seg.Events[r.evIdx]
	r.evIdx++
	return e, nil
}

// endsAtBase reports a segment that ends exactly at the base position.
func (r *Reader) endsAtBase(info archive.SegmentInfo) bool {
	_, end, err := segRange(info)
	if r.from.GTIDOnly() {
		return err == nil && end.GTID == r.from.GTID
	}
	return err == nil && end.File == r.from.File && end.Pos == r.from.Pos
}

// SegmentsRead is how many segments the reader has fetched, and how many
// it passed over unread because they end at the base.
func (r *Reader) SegmentsRead() (read, skipped int) {
	read = r.segIdx + 1 - r.skipped
	if r.segIdx >= len(r.plan.segments) {
		read--
	}
	return max(read, 0), r.skipped
}

// readSegment fetches and parses one segment.
func readSegment(ctx context.Context, repo *archive.Repository, info archive.SegmentInfo) (*Segment, error) {
	rc, err := repo.OpenSegment(ctx, info)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read binlog segment %s %s-%s: %w", info.Stream, info.Start, info.End, err)
	}
	seg, err := ParseSegment(data)
	if err != nil {
		return nil, fmt.Errorf("binlog segment %s %d-%d: %w", info.Stream, info.First, info.Last, err)
	}
	return seg, nil
}
