package oplog

import (
	"fmt"
	"time"

	"github.com/tidemark/tidemark/archive"
)

// Errors of Range: what part of the oplog the archive cannot provide.
var (
	// ErrMissing: a range inside the archive's span is not archived.
	ErrMissing = archive.Class(archive.ErrGap, "oplog range not archived")
	// ErrBeyond: the range reaches past what is archived.
	ErrBeyond = archive.Class(archive.ErrUnreachable, "oplog not archived that far")
)

// Span is a continuous run of archived oplog.
type Span struct {
	Start, End          TS // entries after Start up to End
	FirstTime, LastTime time.Time
}

func (s Span) String() string {
	return fmt.Sprintf("%s (%s) – %s (%s)", s.Start, s.FirstTime.UTC().Format(time.RFC3339), s.End, s.LastTime.UTC().Format(time.RFC3339))
}

// Spans splits a stream's chain at its breaks.
func Spans(c *archive.StreamChain) ([]Span, error) {
	var out []Span
	for i, s := range c.Segments {
		start, err1 := ParseTS(s.Start)
		end, err2 := ParseTS(s.End)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("segment %s %d-%d: %w: positions %q, %q", s.Stream, s.First, s.Last, archive.ErrCorrupt, s.Start, s.End)
		}
		if i == 0 || !continues(c.Segments[i-1], s) {
			out = append(out, Span{Start: start, End: end, FirstTime: s.FirstTime, LastTime: s.LastTime})
			continue
		}
		out[len(out)-1].End = end
		out[len(out)-1].LastTime = s.LastTime
	}
	return out, nil
}

func continues(prev, s archive.SegmentInfo) bool {
	return s.First == prev.Last+1 && s.Start == prev.End
}

// Range returns the segments holding every entry after from up to to,
// checking they are continuous. Late entries (FerretDB) may sit in a
// segment after the one whose range holds their ts, so the segments that
// follow to within the overlap are included too; readers filter by ts.
func Range(c *archive.StreamChain, from, to TS) ([]archive.SegmentInfo, error) {
	spans, err := Spans(c)
	if err != nil {
		return nil, err
	}
	if len(spans) == 0 {
		return nil, fmt.Errorf("%w: the archive holds no oplog", ErrBeyond)
	}
	var span *Span
	for i := range spans {
		if !from.Less(spans[i].Start) && !spans[i].End.Less(from) {
			span = &spans[i]
		}
	}
	if span == nil && spans[len(spans)-1].End.Less(from) {
		return nil, fmt.Errorf("%w: archived up to %s, the range starts at %s", ErrBeyond, spans[len(spans)-1].End, from)
	}
	if span == nil {
		return nil, fmt.Errorf("%w: nothing archived covers %s (archived: %s)", ErrMissing, from, describe(spans))
	}
	if span.End.Less(to) {
		for _, s := range spans {
			if span.End.Less(s.Start) {
				return nil, fmt.Errorf("%w: %s to %s is missing (archived: %s)", ErrMissing, span.End, s.Start, describe(spans))
			}
		}
		return nil, fmt.Errorf("%w: archived up to %s, the target is %s (archived: %s)", ErrBeyond, span.End, to, describe(spans))
	}
	horizon := TS{T: to.T + ferretOverlap + 1}
	var out []archive.SegmentInfo
	for _, s := range c.Segments {
		start, _ := ParseTS(s.Start)
		end, _ := ParseTS(s.End)
		if from.Less(end) && start.Less(horizon) && !start.Less(span.Start) && !span.End.Less(end) {
			out = append(out, s)
		}
	}
	return out, nil
}

// TimeTS returns the end of the first segment holding entries written at
// or after t: replaying to it, filtered by wall time, reaches t. ok is
// false when nothing that late is archived.
func TimeTS(c *archive.StreamChain, t time.Time) (TS, bool) {
	for _, s := range c.Segments {
		if !s.LastTime.Before(t) {
			end, err := ParseTS(s.End)
			return end, err == nil
		}
	}
	return TS{}, false
}

func describe(spans []Span) string {
	s := ""
	for i, sp := range spans {
		if i > 0 {
			s += ", "
		}
		s += sp.String()
	}
	return s
}
