package mongodb

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/file"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/oplog"
)

// TestReplaySurvivesConsolidation: segments the plan named are
// consolidated (and deleted) by the streamer before replay reads them;
// replay reads the consolidated segment instead and applies every entry
// exactly once, in order.
func TestReplaySurvivesConsolidation(t *testing.T) {
	ctx := context.Background()
	store, err := file.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	repo, err := archive.Init(ctx, store, archive.InitOptions{NoEncrypt: true})
	if err != nil {
		t.Fatal(err)
	}
	w, err := repo.OpenStream(ctx, "oplog/rs0", archive.StreamWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	db := "TestReplaySurvivesConsolidation"
	w.Restart("1764500000:0")
	n := 0
	for flush := range 3 {
		data := oplog.SegmentHeader()
		for i := range 10 {
			n++
			var o string
			if flush == 0 {
				o = fmt.Sprintf(`"op": "i", "ns": "%s.c", "o": {"_id": %d, "v": 0}`, db, i)
			} else {
				o = fmt.Sprintf(`"op": "u", "ns": "%s.c", "o": {"$v": 2, "diff": {"u": {"v": %d}, "i": {"f%d": true}}}, "o2": {"_id": %d}`, db, flush, flush, i)
			}
			e := oplogEntry(t, n, o)
			data = append(data, e.Raw...)
		}
		if err := w.Append(ctx, data, archive.Position{End: fmt.Sprintf("1764500000:%d", n), Time: time.Unix(1764500000, 0), Events: 10}); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	chain, err := repo.ReadStream(ctx, "oplog/rs0")
	if err != nil || len(chain.Segments) != 3 {
		t.Fatalf("chain before consolidation: %v, %v", chain, err)
	}
	planned := chain.Segments
	if err := w.Close(ctx); err != nil { // consolidates 1-3, deletes the small ones
		t.Fatal(err)
	}
	f := testenv.FerretDBServer(t)
	c, err := f.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(ctx)
	c.Database(db).Drop(ctx)
	plan := &Plan{Flavour: oplog.FlavourMongoDB, From: oplog.TS{T: 1764500000}, To: oplog.TS{T: 1764500000, I: uint32(n)}, Segments: planned}
	res := &Result{}
	cfg := Config{Repo: repo, Jobs: 3, Log: slog.Default(), Progress: func(string, int64, int64) {}}
	if err := replay(ctx, cfg, plan, c, nil, res); err != nil {
		t.Fatal(err)
	}
	if res.Ops != int64(n) {
		t.Fatalf("replayed %d ops, want %d", res.Ops, n)
	}
	var doc bson.M
	if err := c.Database(db).Collection("c").FindOne(ctx, bson.D{{Key: "_id", Value: 7}}).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc["v"] != int32(2) || doc["f1"] != true || doc["f2"] != true {
		t.Fatalf("document 7 = %v", doc)
	}
}
