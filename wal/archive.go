package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tidemark/tidemark/archive"
)

// Timeline is what the repository holds of one timeline, read from object
// names alone (a host with only public keys can compute it).
type Timeline struct {
	TLI   uint32
	Start LSN // first archived byte
	End   LSN // end of the newest archived byte
	// Complete and Partial count segments; Partial ones are still filling
	// (or ended by a timeline switch) and held as parts.
	Complete, Partial int
	Gaps              []Gap // holes between Start and End
	LastWrite         time.Time
	segments          map[uint64]*segState
}

// Gap is a missing range of WAL.
type Gap struct {
	TLI      uint32
	From, To LSN
}

func (g Gap) String() string { return fmt.Sprintf("timeline %d %s–%s", g.TLI, g.From, g.To) }

type segState struct {
	complete bool
	parts    []objectName
}

// prefix is how many bytes from the segment's start the parts cover
// contiguously (the whole segment when complete).
func (s *segState) prefix(segSize uint64) uint64 {
	if s.complete {
		return segSize
	}
	sort.Slice(s.parts, func(i, j int) bool { return s.parts[i].from < s.parts[j].from })
	var end uint64
	for _, p := range s.parts {
		if p.from > end {
			break
		}
		end = max(end, p.to)
	}
	return end
}

// State is the archived WAL of every timeline plus the history files held.
type State struct {
	Geometry  Geometry
	Timelines []*Timeline // ascending TLI
	Histories []uint32
}

// Latest returns the newest timeline, or nil for an empty archive.
func (s *State) Latest() *Timeline {
	if len(s.Timelines) == 0 {
		return nil
	}
	return s.Timelines[len(s.Timelines)-1]
}

// LoadState lists the repository's WAL.
func LoadState(ctx context.Context, store archive.Store, g Geometry) (*State, error) {
	byTLI := map[uint32]*Timeline{}
	st := &State{Geometry: g}
	err := store.List(ctx, walPrefix, "", func(o archive.ObjectInfo) error {
		if h, ok := strings.CutPrefix(o.Name, historyPrefix); ok {
			if t, err := strconv.ParseUint(strings.TrimSuffix(h, ".history"), 16, 32); err == nil {
				st.Histories = append(st.Histories, uint32(t))
			}
			return nil
		}
		n, ok := g.parseObject(o.Name)
		if !ok {
			return fmt.Errorf("unexpected object %s in the WAL archive", o.Name)
		}
		tl := byTLI[n.tli]
		if tl == nil {
			tl = &Timeline{TLI: n.tli, segments: map[uint64]*segState{}}
			byTLI[n.tli] = tl
		}
		s := tl.segments[n.segno]
		if s == nil {
			s = &segState{}
			tl.segments[n.segno] = s
		}
		if n.part {
			s.parts = append(s.parts, n)
		} else {
			s.complete = true
		}
		if o.ModTime.After(tl.LastWrite) {
			tl.LastWrite = o.ModTime
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list WAL archive: %w", err)
	}
	for _, tl := range byTLI {
		tl.summarize(g)
		st.Timelines = append(st.Timelines, tl)
	}
	sort.Slice(st.Timelines, func(i, j int) bool { return st.Timelines[i].TLI < st.Timelines[j].TLI })
	return st, nil
}

func (tl *Timeline) summarize(g Geometry) {
	segnos := make([]uint64, 0, len(tl.segments))
	for n := range tl.segments {
		segnos = append(segnos, n)
	}
	sort.Slice(segnos, func(i, j int) bool { return segnos[i] < segnos[j] })
	tl.Start = g.SegStart(segnos[0])
	for i, n := range segnos {
		s := tl.segments[n]
		if s.complete {
			tl.Complete++
		} else {
			tl.Partial++
		}
		prefix := s.prefix(g.SegSize)
		if i > 0 && segnos[i-1] != n-1 {
			tl.Gaps = append(tl.Gaps, Gap{tl.TLI, g.SegStart(segnos[i-1] + 1), g.SegStart(n)})
		}
		if prefix == 0 {
			tl.Gaps = append(tl.Gaps, Gap{tl.TLI, g.SegStart(n), g.SegStart(n) + LSN(g.SegSize)})
		} else if i < len(segnos)-1 && prefix < g.SegSize {
			// A partial segment before the newest one is a hole, unless the
			// timeline ended there (a switch point; checked against history).
			tl.Gaps = append(tl.Gaps, Gap{tl.TLI, g.SegStart(n) + LSN(prefix), g.SegStart(n + 1)})
		}
		tl.End = g.SegStart(n) + LSN(prefix)
	}
}

// Fetch writes the archived file PostgreSQL asks restore_command for — a
// segment or a timeline history file — to dst. A segment still filling is
// served as the archived prefix, zero-padded to the full segment size, so
// recovery reaches the last archived commit. Missing files wrap
// archive.ErrNotExist.
func Fetch(ctx context.Context, repo *archive.Repository, g Geometry, fileName string, dst io.Writer) error {
	if strings.HasSuffix(fileName, ".history") {
		t, err := strconv.ParseUint(strings.TrimSuffix(fileName, ".history"), 16, 32)
		if err != nil || len(fileName) != len("00000001.history") {
			return fmt.Errorf("%w: not a history file name %q", archive.ErrNotExist, fileName)
		}
		return copyObject(ctx, repo, historyObject(uint32(t)), dst)
	}
	tli, segno, err := g.ParseFileName(fileName)
	if err != nil {
		return fmt.Errorf("%w: %v", archive.ErrNotExist, err)
	}
	// A segment can complete while we read it (its parts are then deleted):
	// look again from the top instead of serving less than is archived.
	for attempt := 0; ; attempt++ {
		err = copyObject(ctx, repo, g.segmentObject(tli, segno), dst)
		if !errors.Is(err, archive.ErrNotExist) {
			return err
		}
		seg, err := assembleParts(ctx, repo, g, tli, segno)
		if errors.Is(err, errPartVanished) && attempt < 5 {
			continue
		}
		if err != nil {
			return err
		}
		_, err = dst.Write(seg)
		return err
	}
}

var errPartVanished = errors.New("part deleted while reading")

// assembleParts returns a segment still filling: its parts' contiguous
// prefix, zero-padded to the segment size.
func assembleParts(ctx context.Context, repo *archive.Repository, g Geometry, tli uint32, segno uint64) ([]byte, error) {
	var parts []objectName
	prefix := g.segmentObject(tli, segno) + partSep
	if err := repo.Store().List(ctx, prefix, "", func(o archive.ObjectInfo) error {
		if n, ok := g.parseObject(o.Name); ok && n.part {
			parts = append(parts, n)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list parts of %s: %w", g.FileName(tli, segno), err)
	}
	s := &segState{parts: parts}
	if s.prefix(g.SegSize) == 0 {
		return nil, fmt.Errorf("WAL segment %s: %w", g.FileName(tli, segno), archive.ErrNotExist)
	}
	seg := make([]byte, g.SegSize) // zeros beyond the archived prefix
	var at uint64
	for _, p := range s.parts {
		if p.to <= at {
			continue
		}
		if p.from > at {
			break
		}
		// Overlapping parts are legal (a resumed streamer re-sends the same
		// bytes): the bytes already placed stay.
		w := &sliceWriter{buf: seg[p.from:p.to], skip: int(at - p.from)}
		err := copyRange(ctx, repo, g.partObject(tli, segno, p.from, p.to), w, 0)
		if errors.Is(err, archive.ErrNotExist) {
			return nil, errPartVanished
		}
		if err != nil {
			return nil, err
		}
		if w.n != int(p.to-p.from) {
			return nil, fmt.Errorf("%w: part %s holds %d bytes, its name says %d", archive.ErrCorrupt,
				g.partObject(tli, segno, p.from, p.to), w.n, p.to-p.from)
		}
		at = p.to
	}
	return seg, nil
}

// sliceWriter fills a fixed slice, leaving its first skip bytes as they
// are, and refuses to overflow it.
type sliceWriter struct {
	buf  []byte
	skip int
	n    int
}

func (w *sliceWriter) Write(p []byte) (int, error) {
	if len(p) > len(w.buf)-w.n {
		return 0, fmt.Errorf("%w: part longer than its name says", archive.ErrCorrupt)
	}
	start, end := w.n, w.n+len(p)
	if end > w.skip {
		from := max(start, w.skip)
		copy(w.buf[from:end], p[from-start:])
	}
	w.n = end
	return len(p), nil
}

func copyObject(ctx context.Context, repo *archive.Repository, name string, dst io.Writer) error {
	return copyRange(ctx, repo, name, dst, 0)
}

// copyRange copies an object's plaintext to dst, skipping its first skip
// bytes. Any verification failure surfaces as an error naming the object.
func copyRange(ctx context.Context, repo *archive.Repository, name string, dst io.Writer, skip uint64) error {
	rc, err := repo.Get(ctx, name, archive.KindSegment)
	if err != nil {
		return err
	}
	defer rc.Close()
	if skip > 0 {
		if _, err := io.CopyN(io.Discard, rc, int64(skip)); err != nil {
			return err
		}
	}
	_, err = io.Copy(dst, rc)
	return err
}

// writer puts WAL into the repository.
type writer struct {
	repo *archive.Repository
	g    Geometry
	log  *slog.Logger // nil: slog.Default()
}

func (w writer) putPart(ctx context.Context, tli uint32, segno uint64, from, to uint64, data []byte) error {
	return w.put(ctx, w.g.partObject(tli, segno, from, to), data)
}

// putSegment stores a complete segment, then removes its parts.
func (w writer) putSegment(ctx context.Context, tli uint32, segno uint64, data []byte) error {
	if err := w.put(ctx, w.g.segmentObject(tli, segno), data); err != nil {
		return err
	}
	return w.dropParts(ctx, tli, segno)
}

// put stores WAL under name. Two writers may reach the same WAL (a backup
// archiving its range while a streamer starts, the old and the new
// primary's copies of a timeline): an existing object with the same bytes
// is success, other bytes under that name a hard error (pgBackRest's
// archive-duplicate rule). A writer holding only the recipients (a backup
// host) cannot read the existing object back: it keeps it, since the
// repository is bound to this cluster, and says so.
func (w writer) put(ctx context.Context, name string, data []byte) error {
	_, err := w.repo.Put(ctx, name, archive.KindSegment, bytes.NewReader(data))
	if !errors.Is(err, archive.ErrExist) {
		return err
	}
	rc, gerr := w.repo.Get(ctx, name, archive.KindSegment)
	if errors.Is(gerr, archive.ErrNoIdentity) {
		log := w.log
		if log == nil {
			log = slog.Default()
		}
		log.Warn("WAL already archived by another writer of this repository; without the identity its bytes cannot be compared, so it is kept",
			"object", name)
		return nil
	}
	if gerr != nil {
		return fmt.Errorf("%s already archived, and reading it back failed: %w", name, gerr)
	}
	defer rc.Close()
	same, cerr := sameBytes(rc, data)
	if cerr != nil {
		return fmt.Errorf("%s already archived, and reading it back failed: %w", name, cerr)
	}
	if !same {
		return fmt.Errorf("%s already archived with other bytes: is another cluster's streamer writing this repository? %w", name, err)
	}
	return nil
}

// sameBytes reports whether r holds exactly data.
func sameBytes(r io.Reader, data []byte) (bool, error) {
	buf := make([]byte, 64<<10)
	for {
		n, err := io.ReadFull(r, buf)
		if n > len(data) || !bytes.Equal(buf[:n], data[:n]) {
			return false, nil
		}
		data = data[n:]
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return len(data) == 0, nil
		case err != nil:
			return false, err
		}
	}
}

// dropParts deletes the parts of a segment that is archived whole. Safe to
// repeat: a crash between the two steps leaves parts a later run removes.
func (w writer) dropParts(ctx context.Context, tli uint32, segno uint64) error {
	var names []string
	prefix := w.g.segmentObject(tli, segno) + partSep
	if err := w.repo.Store().List(ctx, prefix, "", func(o archive.ObjectInfo) error {
		names = append(names, o.Name)
		return nil
	}); err != nil {
		return err
	}
	for _, n := range names {
		if err := w.repo.Store().Delete(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

func (w writer) putHistory(ctx context.Context, tli uint32, content []byte) error {
	_, err := w.repo.Put(ctx, historyObject(tli), archive.KindSegment, bytes.NewReader(content))
	if errors.Is(err, archive.ErrExist) {
		return nil // history files never change once written
	}
	return err
}
