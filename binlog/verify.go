package binlog

import (
	"context"
	"fmt"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/tidemark/tidemark/archive"
)

// StreamSummary is what status and verify report for one binlog stream.
type StreamSummary struct {
	Stream    string    `json:"stream"`
	Segments  int       `json:"segments"`
	Events    int64     `json:"events"`
	Bytes     int64     `json:"bytes"`
	Start     string    `json:"start"` // first archived position
	End       string    `json:"end"`   // resume point after the last
	FirstTime time.Time `json:"first_time"`
	LastTime  time.Time `json:"last_time"`
	Files     []string  `json:"files"`
	Breaks    []string  `json:"breaks"`
}

// Summarize describes every binlog stream from its index alone (no key
// needed).
func Summarize(ctx context.Context, repo *archive.Repository) ([]StreamSummary, error) {
	names, err := repo.Streams(ctx, StreamPrefix)
	if err != nil {
		return nil, err
	}
	var out []StreamSummary
	for _, n := range names {
		chain, err := repo.ReadStream(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, summarize(n, chain))
	}
	return out, nil
}

func summarize(name string, chain *archive.StreamChain) StreamSummary {
	s := StreamSummary{Stream: name, Segments: len(chain.Segments), Files: []string{}, Breaks: []string{}}
	for i, seg := range chain.Segments {
		if i == 0 {
			s.Start, s.FirstTime = seg.Start, seg.FirstTime
		}
		s.End, s.LastTime = seg.End, seg.LastTime
		s.Events += seg.Events
		s.Bytes += seg.Bytes
		if len(s.Files) == 0 || s.Files[len(s.Files)-1] != seg.Group {
			s.Files = append(s.Files, seg.Group)
		}
	}
	for _, b := range chain.Breaks {
		s.Breaks = append(s.Breaks, b.String())
	}
	return s
}

// Continues names the streams the named one carries on from, nearest
// first: the one whose end GTID state its first segment starts at (a
// promoted replica's stream starts there, see follow.go), and so on back.
func Continues(sums []StreamSummary, name string) []string {
	var out []string
	seen := map[string]bool{name: true}
	for cur := name; ; {
		prev := ""
		for _, s := range sums {
			if s.Stream == cur {
				prev = s.Start
			}
		}
		start, err := ParsePosition(prev)
		if err != nil || start.GTID == "" {
			return out
		}
		next := ""
		for _, s := range sums {
			if end, err := ParsePosition(s.End); err == nil && !seen[s.Stream] && end.GTID == start.GTID {
				next = s.Stream
				break
			}
		}
		if next == "" {
			return out
		}
		seen[next] = true
		out = append(out, next)
		cur = next
	}
}

// Verify reads back every segment of every binlog stream: checksums of
// every event, event positions following each other from the segment's
// start to its end, the event count of its index. It returns the
// summaries and the problems found (nil when there are none); a break in
// a chain is a problem.
func Verify(ctx context.Context, repo *archive.Repository) ([]StreamSummary, []error, error) {
	names, err := repo.Streams(ctx, StreamPrefix)
	if err != nil {
		return nil, nil, err
	}
	var out []StreamSummary
	var problems []error
	for _, n := range names {
		chain, err := repo.ReadStream(ctx, n)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, summarize(n, chain))
		for _, b := range chain.Breaks {
			problems = append(problems, fmt.Errorf("%w: %s", ErrNotCovered, b))
		}
		for _, info := range chain.Segments {
			if err := verifySegment(ctx, repo, info); err != nil {
				problems = append(problems, err)
			}
		}
	}
	return out, problems, nil
}

func verifySegment(ctx context.Context, repo *archive.Repository, info archive.SegmentInfo) error {
	seg, err := readSegment(ctx, repo, info)
	if err != nil {
		return err
	}
	start, end, err := segRange(info)
	if err != nil {
		return err
	}
	next := start.Pos
	if next == 4 {
		if fde, _ := parseEvent(seg.Format.Raw); fde.LogPos != 0 {
			next = fde.LogPos
		}
	}
	last := Position{File: info.Group, Pos: next}
	for _, e := range seg.Events {
		if e.Start() != next || e.LogPos < uint32(len(e.Raw)) {
			return fmt.Errorf("%w: segment %s %d-%d: event at %d, expected %d", ErrCorrupt, info.Stream, info.First, info.Last, e.Start(), next)
		}
		next = e.LogPos
		last = Position{File: info.Group, Pos: next}
		if e.Type == replication.ROTATE_EVENT {
			body, err := seg.Format.Body(e)
			if err != nil {
				return err
			}
			if last.File, last.Pos, err = rotateOf(body); err != nil {
				return err
			}
		}
	}
	if last.File != end.File || last.Pos != end.Pos || int64(len(seg.Events)) != info.Events {
		return fmt.Errorf("%w: segment %s %d-%d holds %d events up to %s:%d, its index says %d up to %s", ErrCorrupt,
			info.Stream, info.First, info.Last, len(seg.Events), last.File, last.Pos, info.Events, info.End)
	}
	return nil
}

// Reached reports whether some binlog stream ends at or past every GTID of
// a MariaDB GTID position (from the index alone): what a caller waits for
// before relying on the archive holding a server's writes.
func Reached(ctx context.Context, repo *archive.Repository, gtidPos string) (bool, error) {
	want, err := ParseMariaState(gtidPos)
	if err != nil {
		return false, err
	}
	sums, err := Summarize(ctx, repo)
	if err != nil {
		return false, err
	}
	for _, s := range sums {
		end, err := ParsePosition(s.End)
		if err != nil {
			continue
		}
		st, err := ParseMariaState(end.GTID)
		held := err == nil
		for _, g := range want {
			held = held && st.Contains(g)
		}
		if held {
			return true, nil
		}
	}
	return false, nil
}
