package archive_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/tidemark/tidemark/archive"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func appendEvents(t *testing.T, w *archive.StreamWriter, group string, from, to int, base time.Time) []byte {
	t.Helper()
	var all []byte
	for i := from; i < to; i++ {
		ev := []byte(fmt.Sprintf("event-%06d;", i))
		all = append(all, ev...)
		if err := w.Append(context.Background(), ev, archive.Position{Group: group, End: fmt.Sprintf("%s:%d", group, i+1),
			Time: base.Add(time.Duration(i) * time.Second), Events: 1}); err != nil {
			t.Fatal(err)
		}
	}
	return all
}

func chainData(t *testing.T, r *archive.Repository, c *archive.StreamChain) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, s := range c.Segments {
		rc, err := r.OpenSegment(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(&buf, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
	return buf.Bytes()
}

func TestStreamWriterConsolidatesAndResumes(t *testing.T) {
	ctx := context.Background()
	id := identity(t)
	r, dir := newRepo(t, archive.InitOptions{Recipients: []string{id.Recipient().String()}})
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	opts := archive.StreamWriterOptions{MaxSegmentBytes: 1 << 20, MaxSegmentAge: time.Minute, Now: clock.now}
	w, err := r.OpenStream(ctx, "binlog/test", opts)
	if err != nil {
		t.Fatal(err)
	}
	w.Restart("f1:4")
	base := clock.t
	var want []byte
	for flush := 0; flush < 5; flush++ {
		want = append(want, appendEvents(t, w, "f1", flush*10, flush*10+10, base)...)
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if d, _ := w.Durable(); d.End != fmt.Sprintf("f1:%d", flush*10+10) {
			t.Fatalf("durable end %s after flush %d", d.End, flush)
		}
	}
	c, err := r.ReadStream(ctx, "binlog/test")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Segments) != 5 || len(c.Breaks) != 0 {
		t.Fatalf("before consolidation: %d segments, breaks %v", len(c.Segments), c.Breaks)
	}

	// Old enough: the next flush consolidates and deletes the small ones.
	clock.t = clock.t.Add(2 * time.Minute)
	want = append(want, appendEvents(t, w, "f1", 50, 60, base)...)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c, err = r.ReadStream(ctx, "binlog/test")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Segments) != 1 || c.Segments[0].First != 1 || c.Segments[0].Last != 6 || c.Segments[0].Events != 60 ||
		c.Segments[0].Start != "f1:4" || c.Segments[0].End != "f1:60" || !c.Segments[0].FirstTime.Equal(base) {
		t.Fatalf("after consolidation: %+v", c.Segments)
	}
	reader, err := reopen(t, dir, archive.Keys{Identities: []age.Identity{id}})
	if err != nil {
		t.Fatal(err)
	}
	if got := chainData(t, reader, c); !bytes.Equal(got, want) {
		t.Fatal("consolidated data differs from what was appended")
	}

	// A new group (binlog rotation) starts a new segment; a crash (no Close)
	// leaves small segments that a new writer continues after.
	want = append(want, appendEvents(t, w, "f2", 60, 70, base)...)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	w2, err := reopenStream(t, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := w2.Durable(); !ok || d.End != "f2:70" {
		t.Fatalf("reopened writer resumes at %+v", d)
	}
	want = append(want, appendEvents(t, w2, "f2", 70, 80, base)...)
	if err := w2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r2, err := reopen(t, dir, archive.Keys{Identities: []age.Identity{id}})
	if err != nil {
		t.Fatal(err)
	}
	c, err = r2.ReadStream(ctx, "binlog/test")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Breaks) != 0 || c.Segments[len(c.Segments)-1].End != "f2:80" {
		t.Fatalf("chain %+v breaks %v", c.Segments, c.Breaks)
	}
	if got := chainData(t, r2, c); !bytes.Equal(got, want) {
		t.Fatal("stream data differs from what was appended")
	}
}

func reopenStream(t *testing.T, dir string, o archive.StreamWriterOptions) (*archive.StreamWriter, error) {
	t.Helper()
	// A writer needs no private key: the index is readable with public keys only.
	r, err := reopen(t, dir, archive.Keys{})
	if err != nil {
		return nil, err
	}
	return r.OpenStream(context.Background(), "binlog/test", o)
}

func TestStreamBreaksReported(t *testing.T) {
	ctx := context.Background()
	r, dir := newRepo(t, archive.InitOptions{NoEncrypt: true})
	w, err := r.OpenStream(ctx, "oplog/rs0", archive.StreamWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now()
	for i := 0; i < 4; i++ {
		appendEvents(t, w, "", i*3, i*3+3, base)
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The streamer found its resume point gone and restarts elsewhere.
	w.Restart(":100")
	appendEvents(t, w, "", 100, 103, base)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Someone deletes a segment in the middle.
	if err := removeObjects(dir, "oplog/rs0/idx/0000000000000002-0000000000000002"); err != nil {
		t.Fatal(err)
	}
	c, err := r.ReadStream(ctx, "oplog/rs0")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Breaks) != 2 || !strings.Contains(c.Breaks[0].Reason, "segments 2 to 2 are missing") ||
		!strings.Contains(c.Breaks[1].Reason, "different position") || c.Breaks[1].Before.Start != ":100" {
		t.Fatalf("breaks: %v", c.Breaks)
	}
	if _, err := r.ReadStream(ctx, "oplog/rs0/idx"); err == nil {
		t.Fatal("a stream name ending in a segment directory was accepted")
	}
}

func removeObjects(dir string, names ...string) error {
	for _, n := range names {
		if err := os.Remove(filepath.Join(dir, filepath.FromSlash(n))); err != nil {
			return err
		}
	}
	return nil
}

// TestStreamWriterReplacesUncommittedSegment: a writer killed between a
// segment's data and its index entry leaves data nothing lists; the next
// writer reaches the same segment number and replaces it instead of
// failing forever with "object already exists".
func TestStreamWriterReplacesUncommittedSegment(t *testing.T) {
	ctx := context.Background()
	id := identity(t)
	r, dir := newRepo(t, archive.InitOptions{Recipients: []string{id.Recipient().String()}})
	opts := archive.StreamWriterOptions{MaxSegmentBytes: 1 << 20, MaxSegmentAge: time.Hour}
	w, err := r.OpenStream(ctx, "binlog/test", opts)
	if err != nil {
		t.Fatal(err)
	}
	w.Restart("f1:0")
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	want := appendEvents(t, w, "f1", 0, 10, base)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, w, "f1", 10, 20, base)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The crash: the second segment's index entry never got written.
	idx, err := filepath.Glob(filepath.Join(dir, "binlog", "test", "idx", "*"))
	if err != nil || len(idx) != 2 {
		t.Fatalf("index entries %v, %v", idx, err)
	}
	if err := os.Remove(idx[1]); err != nil {
		t.Fatal(err)
	}
	w2, err := reopenStream(t, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := w2.Durable(); !ok || d.End != "f1:10" {
		t.Fatalf("reopened writer resumes at %+v", d)
	}
	want = append(want, appendEvents(t, w2, "f1", 10, 25, base)...)
	if err := w2.Close(ctx); err != nil {
		t.Fatalf("writing over the uncommitted segment: %v", err)
	}
	r2, err := reopen(t, dir, archive.Keys{Identities: []age.Identity{id}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := r2.ReadStream(ctx, "binlog/test")
	if err != nil {
		t.Fatal(err)
	}
	if got := chainData(t, r2, c); len(c.Breaks) != 0 || !bytes.Equal(got, want) {
		t.Fatalf("chain after the replacement: %+v breaks %v", c.Segments, c.Breaks)
	}
}
