package archive

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// StreamWriterOptions bound how much a writer keeps in memory and how long
// small segments live before consolidation.
type StreamWriterOptions struct {
	// MaxSegmentBytes consolidates the open segment once it holds this much
	// (default 16 MiB); pending data past it is flushed on its own.
	MaxSegmentBytes int64
	// MaxSegmentAge consolidates the open segment once its first flush is
	// this old (default 10 minutes).
	MaxSegmentAge time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Position describes data handed to Append: the engine's resume point after
// it, the time of its last event and how many events it holds.
type Position struct {
	Group  string // e.g. the binlog file; a new group starts a new segment
	End    string
	Time   time.Time
	Events int64
	// Header, when set, is stored at the start of every segment of the group
	// (small and consolidated), so each segment is self-describing: a binlog
	// segment begins with the file's magic and format description event.
	// Readers get it back as the first bytes of the segment's data.
	Header []byte
}

// StreamWriter appends one stream. Data handed to Append is durable once
// Flush returns; Durable then names the resume point the engine may
// acknowledge to its server. Not safe for concurrent use.
type StreamWriter struct {
	repo   *Repository
	stream string
	opts   StreamWriterOptions

	durable SegmentInfo // newest committed segment
	hasLast bool
	nextSeq uint64
	start   string // Start of the next segment

	header    []byte        // Position.Header of the current group
	open      []SegmentInfo // committed small segments awaiting consolidation
	openData  bytes.Buffer
	openSince time.Time

	pending     bytes.Buffer
	pendingInfo SegmentInfo
}

// OpenStream returns a writer that continues stream after its newest
// segment. A stream whose chain overlaps itself is refused: that happens
// only when two writers wrote it.
func (r *Repository) OpenStream(ctx context.Context, stream string, o StreamWriterOptions) (*StreamWriter, error) {
	chain, err := r.ReadStream(ctx, stream)
	if err != nil {
		return nil, err
	}
	if o.MaxSegmentBytes <= 0 {
		o.MaxSegmentBytes = 16 << 20
	}
	if o.MaxSegmentAge <= 0 {
		o.MaxSegmentAge = 10 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := &StreamWriter{repo: r, stream: stream, opts: o, nextSeq: 1}
	if last, ok := chain.Last(); ok {
		w.durable, w.hasLast = last, true
		w.nextSeq = last.Last + 1
		w.start = last.End
	}
	return w, nil
}

// Durable returns the newest durable segment; its End is the position up to
// which the server may be told the data is safe.
func (w *StreamWriter) Durable() (SegmentInfo, bool) { return w.durable, w.hasLast }

// Pending returns how many appended bytes are not durable yet.
func (w *StreamWriter) Pending() int { return w.pending.Len() }

// Restart sets where the next segment starts. Call it once before the first
// Append of a session when the stream cannot continue from Durable().End
// (after recording the gap with Repository.RecordGap), or to set the start
// of a new stream.
func (w *StreamWriter) Restart(start string) { w.start = start }

// Append buffers data that ends at pos. A new group consolidates and closes
// the open segment first, so segments never span groups.
func (w *StreamWriter) Append(ctx context.Context, data []byte, pos Position) error {
	if (w.pending.Len() > 0 && w.pendingInfo.Group != pos.Group) || (len(w.open) > 0 && w.open[0].Group != pos.Group) {
		if err := w.Close(ctx); err != nil {
			return err
		}
	}
	if pos.Header != nil {
		w.header = pos.Header
	}
	if w.pending.Len() == 0 {
		w.pendingInfo = SegmentInfo{Stream: w.stream, Group: pos.Group, Start: w.start, FirstTime: pos.Time}
	}
	w.pending.Write(data)
	w.pendingInfo.End = pos.End
	if pos.Time.After(w.pendingInfo.LastTime) {
		w.pendingInfo.LastTime = pos.Time
	}
	w.pendingInfo.Events += pos.Events
	if int64(w.pending.Len()) >= w.opts.MaxSegmentBytes {
		return w.Flush(ctx)
	}
	return nil
}

// Flush makes everything appended durable as a new segment and, when the
// open segment is big or old enough, consolidates it.
func (w *StreamWriter) Flush(ctx context.Context) error {
	if w.pending.Len() > 0 {
		s := w.pendingInfo
		s.First, s.Last = w.nextSeq, w.nextSeq
		s.Bytes = int64(len(w.header) + w.pending.Len())
		if err := w.repo.putSegment(ctx, s, w.withHeader(w.pending.Bytes())); err != nil {
			return err
		}
		w.nextSeq++
		w.start = s.End
		w.durable, w.hasLast = s, true
		if len(w.open) == 0 {
			w.openSince = w.opts.Now()
		}
		w.open = append(w.open, s)
		w.openData.Write(w.pending.Bytes())
		w.pending.Reset()
	}
	if len(w.open) > 0 && (int64(w.openData.Len()) >= w.opts.MaxSegmentBytes || w.opts.Now().Sub(w.openSince) >= w.opts.MaxSegmentAge) {
		return w.consolidate(ctx)
	}
	return nil
}

// Close flushes and consolidates; the writer may be used again afterwards.
func (w *StreamWriter) Close(ctx context.Context) error {
	if err := w.Flush(ctx); err != nil {
		return err
	}
	return w.consolidate(ctx)
}

// consolidate stores the open small segments again as one, then deletes
// them. A crash in between leaves both; readers prefer the consolidated one.
func (w *StreamWriter) consolidate(ctx context.Context) error {
	open := w.open
	data := w.openData.Bytes()
	defer func() {
		w.open = nil
		w.openData.Reset()
	}()
	if len(open) < 2 {
		return nil
	}
	m := open[0]
	m.Last = open[len(open)-1].Last
	m.End = open[len(open)-1].End
	data = w.withHeader(data)
	m.Events, m.Bytes = 0, int64(len(data))
	for _, s := range open {
		m.Events += s.Events
		if s.LastTime.After(m.LastTime) {
			m.LastTime = s.LastTime
		}
	}
	if err := w.repo.putSegment(ctx, m, data); err != nil {
		return fmt.Errorf("consolidate stream %s: %w", w.stream, err)
	}
	w.durable = m
	for _, s := range open {
		if err := w.repo.deleteSegment(ctx, s); err != nil {
			return fmt.Errorf("consolidate stream %s: %w", w.stream, err)
		}
	}
	return nil
}

func (w *StreamWriter) withHeader(data []byte) []byte {
	if len(w.header) == 0 {
		return data
	}
	return append(append(make([]byte, 0, len(w.header)+len(data)), w.header...), data...)
}
