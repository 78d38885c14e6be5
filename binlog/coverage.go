package binlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tidemark/tidemark/archive"
)

// Errors a restore refuses with before writing anything.
var (
	// ErrNotCovered: the archive does not hold the binlog from the base to
	// the target (a break in the stream, or the base before its start).
	ErrNotCovered = archive.Class(archive.ErrGap, "binlog archive does not cover the range")
	// ErrOutsideWindow: the target is not inside what the archive holds.
	ErrOutsideWindow = archive.Class(archive.ErrUnreachable, "target outside the archived binlog window")
)

// Window is a recoverable range: from a base at From, every target up to
// To (and LastTime) can be reached.
type Window struct {
	Stream    string
	From, To  Position
	FirstTime time.Time // commit time of the first archived event after From
	LastTime  time.Time // of the newest archived transaction
}

func (w Window) String() string {
	return fmt.Sprintf("%s (%s) to %s (%s)", w.From, w.FirstTime.UTC().Format(time.RFC3339), w.To, w.LastTime.UTC().Format(time.RFC3339))
}

// plan is the part of a stream a replay reads.
type plan struct {
	stream   string
	segments []archive.SegmentInfo // from the one holding from, to the end of the chain or the first break
	window   Window
	brk      *archive.StreamBreak // the first break after from, if any
}

// segRange is where a segment's events lie: the file and the offsets.
func segRange(s archive.SegmentInfo) (start, end Position, err error) {
	if start, err = ParsePosition(s.Start); err != nil {
		return start, end, fmt.Errorf("segment %s of %s: start: %w", s.Group, s.Stream, err)
	}
	if end, err = ParsePosition(s.End); err != nil {
		return start, end, fmt.Errorf("segment %s of %s: end: %w", s.Group, s.Stream, err)
	}
	if start.File != s.Group {
		start = Position{File: s.Group, Pos: 4, GTID: start.GTID}
	}
	return start, end, nil
}

// locate finds the binlog stream and segment that hold from.
func locate(ctx context.Context, repo *archive.Repository, from Position) (*plan, error) {
	streams, err := repo.Streams(ctx, StreamPrefix)
	if err != nil {
		return nil, err
	}
	// Servers of one cluster have their own files, often with the same
	// names: a position's GTID state tells which stream's file it means.
	var byGTID func(start, end Position) (bool, error)
	if st, err := ParseMariaState(from.GTID); err == nil && len(st) > 0 {
		if byGTID, err = holdsGTID(from, from.GTIDOnly()); err != nil {
			return nil, err
		}
	}
	holds := func(start, end Position) (bool, error) {
		if !from.before(start) && (from.before(end) || (from.File == end.File && from.Pos == end.Pos)) {
			return byGTID == nil || start.GTID == "" && end.GTID == "" || must(byGTID(start, end)), nil
		}
		return false, nil
	}
	if from.GTIDOnly() {
		holds = byGTID
	}
	var windows []string
	for _, name := range streams {
		chain, err := repo.ReadStream(ctx, name)
		if err != nil {
			return nil, err
		}
		for i, s := range chain.Segments {
			start, end, err := segRange(s)
			if err != nil {
				return nil, err
			}
			if ok, err := holds(start, end); err != nil {
				return nil, fmt.Errorf("segment %s-%s of %s: %w", s.Start, s.End, name, err)
			} else if !ok {
				continue
			}
			// The stream from here on, up to the first break after it.
			p := &plan{stream: name, segments: chain.Segments[i:]}
			for _, b := range chain.Breaks {
				if b.Before.First > s.First {
					p.segments = chain.Segments[i:indexOf(chain.Segments, b.Before)]
					p.brk = &b
					break
				}
			}
			if p.brk == nil {
				if err := p.follow(ctx, repo, streams); err != nil {
					return nil, err
				}
			}
			lastSeg := p.segments[len(p.segments)-1]
			_, to, err := segRange(lastSeg)
			if err != nil {
				return nil, err
			}
			p.window = Window{Stream: name, From: from, To: to, FirstTime: s.FirstTime, LastTime: lastSeg.LastTime}
			return p, nil
		}
		if first, ok := firstSeg(chain); ok {
			last, _ := chain.Last()
			windows = append(windows, fmt.Sprintf("%s: %s to %s", name, first.Start, last.End))
		}
	}
	if len(windows) == 0 {
		return nil, fmt.Errorf("%w: no binlog is archived in this repository", ErrNotCovered)
	}
	return nil, fmt.Errorf("%w: the binlog from %s is not archived (archived: %v)", ErrNotCovered, from, windows)
}

// follow extends the plan past the end of its stream into the stream of
// the server that became the primary there: the one whose first segment
// starts at the GTID state the plan ends at (the streamer starts a
// promoted replica's stream exactly there), repeatedly, up to the first
// break.
func (p *plan) follow(ctx context.Context, repo *archive.Repository, streams []string) error {
	seen := map[string]bool{p.stream: true}
	for p.brk == nil {
		_, end, err := segRange(p.segments[len(p.segments)-1])
		if err != nil || end.GTID == "" {
			return err
		}
		next := ""
		var chain *archive.StreamChain
		for _, name := range streams {
			if seen[name] {
				continue
			}
			c, err := repo.ReadStream(ctx, name)
			if err != nil {
				return err
			}
			if first, ok := firstSeg(c); ok {
				if start, err := ParsePosition(first.Start); err == nil && start.GTID == end.GTID {
					next, chain = name, c
					break
				}
			}
		}
		if next == "" {
			return nil
		}
		seen[next] = true
		segs := chain.Segments
		for _, b := range chain.Breaks {
			segs = chain.Segments[:indexOf(chain.Segments, b.Before)]
			p.brk = &b
			break
		}
		p.segments = append(p.segments[:len(p.segments):len(p.segments)], segs...)
	}
	return nil
}

// must is a predicate's answer, false on error.
func must(ok bool, err error) bool { return ok && err == nil }

// holdsGTID matches the segments a GTID-only position lies in: in every
// domain, the segment starts at or before the position and ends at or
// after it. (MariaDB sequence numbers only grow inside a domain, whatever
// server of the cluster wrote them.) A segment whose start has no GTID
// state (a stream begun at its server's first file) starts before any.
//
// all: every domain of the position must be in the segment (a GTID-only
// position has nothing else to go by; a file position's own file says
// where it is, and the GTIDs only tell servers apart).
func holdsGTID(from Position, all bool) (func(start, end Position) (bool, error), error) {
	base, err := ParseMariaState(from.GTID)
	if err != nil {
		return nil, fmt.Errorf("%w: base %s: %v", ErrBadPosition, from, err)
	}
	return func(start, end Position) (bool, error) {
		st, err := ParseMariaState(start.GTID)
		if err != nil {
			return false, err
		}
		en, err := ParseMariaState(end.GTID)
		if err != nil {
			return false, err
		}
		for d, g := range en {
			if st[d].Seq > base[d].Seq || base[d].Seq > g.Seq {
				return false, nil
			}
		}
		for d := range base {
			if _, ok := en[d]; !ok && all {
				return false, nil
			}
		}
		return true, nil
	}, nil
}

func firstSeg(c *archive.StreamChain) (archive.SegmentInfo, bool) {
	if len(c.Segments) == 0 {
		return archive.SegmentInfo{}, false
	}
	return c.Segments[0], true
}

func indexOf(segs []archive.SegmentInfo, s archive.SegmentInfo) int {
	for i, x := range segs {
		if x.First == s.First {
			return i
		}
	}
	return len(segs)
}

// CheckCoverage verifies, without reading any segment, that the archive
// holds every event from the base position from up to the target. It
// fails with ErrNotCovered naming the missing range, or ErrOutsideWindow
// naming the recoverable window.
func CheckCoverage(ctx context.Context, repo *archive.Repository, from Position, to Target) error {
	_, err := planFor(ctx, repo, from, to)
	return err
}

// RecoverableWindow returns what can be reached from a base at from.
func RecoverableWindow(ctx context.Context, repo *archive.Repository, from Position) (Window, error) {
	p, err := locate(ctx, repo, from)
	if err != nil {
		return Window{}, err
	}
	return p.window, nil
}

func planFor(ctx context.Context, repo *archive.Repository, from Position, to Target) (*plan, error) {
	if err := to.validate(); err != nil {
		return nil, err
	}
	p, err := locate(ctx, repo, from)
	if err != nil {
		return nil, err
	}
	w := p.window
	outside := func(why string) error {
		if p.brk != nil {
			return fmt.Errorf("%w: %s: the archive has a break after %s: %s", ErrNotCovered, why, w.To, p.brk)
		}
		return fmt.Errorf("%w: %s; from %s the archive reaches %s", ErrOutsideWindow, why, from, w)
	}
	switch {
	case to.Latest:
		if p.brk != nil {
			return nil, fmt.Errorf("%w: the latest state is past a break: %s", ErrNotCovered, p.brk)
		}
	case !to.Time.IsZero():
		if p.brk != nil && to.Time.Unix() >= w.LastTime.Unix() {
			// The missing part may hold commits of that very second.
			return nil, fmt.Errorf("%w: target time %s needs the binlog past a break: %s", ErrNotCovered,
				to.Time.UTC().Format(time.RFC3339), p.brk)
		}
		if to.Time.Unix() > w.LastTime.Unix() {
			return nil, outside(fmt.Sprintf("target time %s is after the newest archived transaction", to.Time.UTC().Format(time.RFC3339)))
		}
	case !to.Position.IsZero():
		if streams := p.streams(); len(streams) > 1 {
			// Each server numbers its own binlog files, so a file name
			// names a place only within one server's stream.
			return nil, fmt.Errorf("%w: target position %s:%d is ambiguous: from %s the restore crosses a failover (streams %s), whose servers' binlog file names repeat; give --to-time or --to-gtid instead",
				ErrBadPosition, to.Position.File, to.Position.Pos, from, strings.Join(streams, ", "))
		}
		if w.To.before(to.Position) {
			return nil, outside(fmt.Sprintf("target position %s:%d is past the archive", to.Position.File, to.Position.Pos))
		}
		if to.Position.before(Position{File: from.File, Pos: from.Pos}) {
			return nil, fmt.Errorf("%w: target position %s:%d is before the base at %s", ErrOutsideWindow, to.Position.File, to.Position.Pos, from)
		}
	default:
		tg, _ := parseTargetGTID(to.GTID)
		if tg.maria != nil {
			if st, err := ParseMariaState(from.GTID); err == nil && st.Contains(*tg.maria) {
				return nil, fmt.Errorf("%w: the base at %s already contains GTID %s", ErrOutsideWindow, from, to.GTID)
			}
			st, err := ParseMariaState(w.To.GTID)
			if err != nil || !st.Contains(*tg.maria) {
				return nil, outside(fmt.Sprintf("GTID %s is not archived", to.GTID))
			}
		}
	}
	return p, nil
}

// streams lists the streams the plan's segments come from, in order.
func (p *plan) streams() []string {
	var out []string
	for _, s := range p.segments {
		if len(out) == 0 || out[len(out)-1] != s.Stream {
			out = append(out, s.Stream)
		}
	}
	return out
}

// StreamHolding names the binlog stream a restore from the base position
// from replays, "" when none holds it yet (a base taken on a replica
// before the streamer archived its position).
func StreamHolding(ctx context.Context, repo *archive.Repository, from Position) (string, error) {
	p, err := locate(ctx, repo, from)
	if errors.Is(err, ErrNotCovered) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return p.stream, nil
}
