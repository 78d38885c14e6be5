package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A change stream other than PostgreSQL's WAL (binlog, oplog) is archived as
// numbered segments. Every flush makes what arrived durable as a new small
// segment with the next sequence number; once the open segment is big or old
// enough, the writer stores its data again as one consolidated segment
// covering the whole sequence range, then deletes the small ones. Each
// segment is two objects:
//
//	<stream>/seg/<first 016x>-<last 016x>   the data (encrypted)
//	<stream>/idx/<first 016x>-<last 016x>   its SegmentInfo (unencrypted)
//
// The index entry is written after the data and is the commit point. It
// holds positions and times, never user data, so a backup host that has only
// public keys can resume a stream and a planner can pick segments for a time
// without reading them. Readers take the covering chain: consolidated
// segments supersede the small ones they contain, which may linger after a
// crash.
const (
	segDir = "/seg/"
	idxDir = "/idx/"
)

// SegmentInfo describes one stored segment. Start and End are the engine's
// own positions (a binlog file:pos or GTID set, an oplog timestamp): Start
// is where the segment's first event begins, End the resume point after its
// last. A segment whose Start is not the previous segment's End marks a
// break in the stream.
type SegmentInfo struct {
	Stream    string    `json:"stream"`
	First     uint64    `json:"first"`
	Last      uint64    `json:"last"`
	Group     string    `json:"group,omitempty"` // segments consolidate only within a group (a binlog file)
	Start     string    `json:"start"`
	End       string    `json:"end"`
	FirstTime time.Time `json:"first_time"`
	LastTime  time.Time `json:"last_time"`
	Events    int64     `json:"events"`
	Bytes     int64     `json:"bytes"`
}

func (s SegmentInfo) key() string       { return fmt.Sprintf("%016x-%016x", s.First, s.Last) }
func (s SegmentInfo) dataName() string  { return s.Stream + segDir + s.key() }
func (s SegmentInfo) indexName() string { return s.Stream + idxDir + s.key() }

// validStream accepts names such as "binlog/<server-uuid>": a few path
// elements that cannot collide with a segment's own directories.
func validStream(stream string) error {
	if !ValidName(stream) || strings.Contains(stream, segDir) || strings.Contains(stream, idxDir) ||
		strings.HasSuffix(stream, "/seg") || strings.HasSuffix(stream, "/idx") {
		return fmt.Errorf("stream name %q: %w", stream, ErrBadName)
	}
	return nil
}

// ErrBadName marks an object or stream name the repository cannot hold.
var ErrBadName = errors.New("invalid name")

func parseSegmentKey(key string) (first, last uint64, ok bool) {
	a, b, found := strings.Cut(key, "-")
	if !found || len(a) != 16 || len(b) != 16 {
		return 0, 0, false
	}
	f, err1 := strconv.ParseUint(a, 16, 64)
	l, err2 := strconv.ParseUint(b, 16, 64)
	return f, l, err1 == nil && err2 == nil && f <= l && f > 0
}

// StreamChain is a stream as a reader sees it: the covering segments in
// order, and every break between them.
type StreamChain struct {
	Segments []SegmentInfo
	Breaks   []StreamBreak
}

// StreamBreak is a discontinuity between two consecutive segments: missing
// sequence numbers, or a segment that does not start where its predecessor
// ended (the writer recorded a gap).
type StreamBreak struct {
	After  SegmentInfo
	Before SegmentInfo
	Reason string
}

func (b StreamBreak) String() string {
	return fmt.Sprintf("%s: from %s (%s) to %s (%s): %s", b.After.Stream, b.After.End,
		b.After.LastTime.UTC().Format(time.RFC3339), b.Before.Start, b.Before.FirstTime.UTC().Format(time.RFC3339), b.Reason)
}

// ReadStream lists a stream's index and returns its covering chain. A
// stream with no segments yields an empty chain.
func (r *Repository) ReadStream(ctx context.Context, stream string) (*StreamChain, error) {
	if err := validStream(stream); err != nil {
		return nil, err
	}
	var names []string
	prefix := stream + idxDir
	if err := r.store.List(ctx, prefix, "", func(o ObjectInfo) error {
		names = append(names, o.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list stream %s: %w", stream, err)
	}
	infos := make([]SegmentInfo, 0, len(names))
	for _, n := range names {
		key := strings.TrimPrefix(n, prefix)
		first, last, ok := parseSegmentKey(key)
		if !ok {
			return nil, fmt.Errorf("stream %s: unexpected index entry %s: %w", stream, n, ErrCorrupt)
		}
		b, err := r.ReadAll(ctx, n, KindSegmentIndex)
		if errors.Is(err, ErrNotExist) {
			continue // superseded and deleted while we listed
		}
		if err != nil {
			return nil, fmt.Errorf("read stream index %s: %w", n, err)
		}
		var s SegmentInfo
		if err := json.Unmarshal(b, &s); err != nil || s.Stream != stream || s.First != first || s.Last != last {
			return nil, fmt.Errorf("stream index %s does not describe itself: %w", n, ErrCorrupt)
		}
		infos = append(infos, s)
	}
	return coveringChain(infos), nil
}

// coveringChain keeps, for every sequence number, the widest segment that
// holds it, and reports breaks between what remains.
func coveringChain(infos []SegmentInfo) *StreamChain {
	sort.Slice(infos, func(i, j int) bool {
		if infos[i].First != infos[j].First {
			return infos[i].First < infos[j].First
		}
		return infos[i].Last > infos[j].Last
	})
	c := &StreamChain{}
	for _, s := range infos {
		if n := len(c.Segments); n > 0 {
			prev := c.Segments[n-1]
			if s.Last <= prev.Last {
				continue // contained in a consolidated segment
			}
			if s.First <= prev.Last {
				// Overlapping but not contained: two writers, or a bug. Never
				// guess which is right.
				c.Breaks = append(c.Breaks, StreamBreak{After: prev, Before: s, Reason: fmt.Sprintf("segments %s and %s overlap", prev.key(), s.key())})
			} else if s.First != prev.Last+1 {
				c.Breaks = append(c.Breaks, StreamBreak{After: prev, Before: s, Reason: fmt.Sprintf("segments %d to %d are missing", prev.Last+1, s.First-1)})
			} else if s.Start != prev.End {
				c.Breaks = append(c.Breaks, StreamBreak{After: prev, Before: s, Reason: "the stream restarted at a different position (gap recorded by the streamer)"})
			}
		}
		c.Segments = append(c.Segments, s)
	}
	return c
}

// Last returns the newest segment of the chain.
func (c *StreamChain) Last() (SegmentInfo, bool) {
	if len(c.Segments) == 0 {
		return SegmentInfo{}, false
	}
	return c.Segments[len(c.Segments)-1], true
}

// OpenSegment returns a segment's data. ErrNotExist means it was
// consolidated meanwhile: read the stream again.
func (r *Repository) OpenSegment(ctx context.Context, s SegmentInfo) (io.ReadCloser, error) {
	rc, err := r.Get(ctx, s.dataName(), KindSegment)
	if err != nil {
		return nil, fmt.Errorf("open segment %s: %w", s.dataName(), err)
	}
	return rc, nil
}

// Streams lists the streams under prefix ("binlog/", "oplog/").
func (r *Repository) Streams(ctx context.Context, prefix string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	if err := r.store.List(ctx, prefix, "", func(o ObjectInfo) error {
		if i := strings.LastIndex(o.Name, idxDir); i > 0 && !seen[o.Name[:i]] {
			seen[o.Name[:i]] = true
			out = append(out, o.Name[:i])
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list streams under %s: %w", prefix, err)
	}
	sort.Strings(out)
	return out, nil
}

func (r *Repository) putSegment(ctx context.Context, s SegmentInfo, data []byte) error {
	_, err := r.Put(ctx, s.dataName(), KindSegment, bytes.NewReader(data))
	if errors.Is(err, ErrExist) {
		err = r.replaceUncommitted(ctx, s, data)
	}
	if err != nil {
		return fmt.Errorf("store segment %s: %w", s.dataName(), err)
	}
	b, err := jsonMarshal(s)
	if err != nil {
		return err
	}
	if _, err := r.Put(ctx, s.indexName(), KindSegmentIndex, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("commit segment %s: %w", s.indexName(), err)
	}
	return nil
}

// replaceUncommitted handles a segment's data that exists already. Data
// without its index entry is the leftover of a writer that died between
// the two puts (kill -9, a lost store): nothing lists it, the stream's
// lock says no other writer runs, so it is replaced. Data with an index
// entry is another writer's committed segment, which is never touched.
func (r *Repository) replaceUncommitted(ctx context.Context, s SegmentInfo, data []byte) error {
	if _, err := r.store.Stat(ctx, s.indexName()); !errors.Is(err, ErrNotExist) {
		if err == nil {
			return fmt.Errorf("%w (committed: is another streamer writing this repository?)", ErrExist)
		}
		return err
	}
	if err := r.store.Delete(ctx, s.dataName()); err != nil && !errors.Is(err, ErrNotExist) {
		return fmt.Errorf("remove the uncommitted leftover: %w", err)
	}
	_, err := r.Put(ctx, s.dataName(), KindSegment, bytes.NewReader(data))
	return err
}

// deleteSegment removes the index entry first, so no reader lists a
// segment whose data is gone.
func (r *Repository) deleteSegment(ctx context.Context, s SegmentInfo) error {
	if err := r.store.Delete(ctx, s.indexName()); err != nil && !errors.Is(err, ErrNotExist) {
		return fmt.Errorf("delete segment index %s: %w", s.indexName(), err)
	}
	if err := r.store.Delete(ctx, s.dataName()); err != nil && !errors.Is(err, ErrNotExist) {
		return fmt.Errorf("delete segment %s: %w", s.dataName(), err)
	}
	return nil
}
