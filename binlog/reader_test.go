package binlog

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
)

// TestReaderSeeksToBase: a base position at a segment's end (a backup
// taken while the stream was idle) starts the replay at the next segment:
// the segments before it are not fetched, and the first transaction read
// is the one right after the base.
func TestReaderSeeksToBase(t *testing.T) {
	db := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	f := newFixture(t, db)
	c := f.conn()
	cfg := f.config()
	cfg.MaxSegmentAge = time.Hour // no consolidation: the segments stay as flushed
	stop, _ := f.stream(cfg)
	exec(t, c, "CREATE DATABASE s", "CREATE TABLE s.t (id INT PRIMARY KEY)", "INSERT INTO s.t VALUES (1)")
	base := masterPos(t, db)
	f.waitDurable(streamOf(db), base)
	exec(t, c, "INSERT INTO s.t VALUES (2)", "INSERT INTO s.t VALUES (3)")
	f.waitDurable(streamOf(db), masterPos(t, db))
	defer stop() // read while it runs: a stopping stream consolidates its segments
	ctx := context.Background()
	chain, err := f.repo.ReadStream(ctx, streamOf(db))
	if err != nil {
		t.Fatal(err)
	}
	var from Position
	for i, s := range chain.Segments {
		end, err := ParsePosition(s.End)
		if err != nil {
			t.Fatal(err)
		}
		if end.File == base.File && end.Pos == base.Pos && i+1 < len(chain.Segments) {
			from = end
		}
	}
	if from.IsZero() {
		t.Fatalf("no segment ends at the base %s: %+v", base, chain.Segments)
	}
	r, err := NewReader(ctx, f.repo, from, Target{Latest: true})
	if err != nil {
		t.Fatal(err)
	}
	var txns []*Txn
	for {
		txn, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		txns = append(txns, txn)
	}
	if len(txns) != 2 || txns[0].Start.File != from.File || txns[0].Start.Pos != from.Pos {
		t.Fatalf("from %s read %d transactions, the first at %+v; want the 2 inserts after the base", from, len(txns), txns)
	}
	read, skipped := r.SegmentsRead()
	if skipped != 1 {
		t.Errorf("segments read %d, passed over %d: want the one ending at the base passed over unread", read, skipped)
	}
}
