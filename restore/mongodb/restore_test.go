package mongodb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tidemark/tidemark/archive"
	mongobackup "github.com/tidemark/tidemark/basebackup/mongodb"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/oplog"
	"github.com/tidemark/tidemark/restore"
)

type mongoPITR struct {
	t      *testing.T
	src    *testenv.FerretDB
	c      *mongo.Client
	repo   *archive.Repository
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	dur    oplog.TS
}

func newMongoPITR(t *testing.T) *mongoPITR {
	t.Helper()
	ctx := context.Background()
	repo := testenv.NewRepo(t).Repository
	src := testenv.NewFerretDB(t)
	c, err := src.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(context.Background()) })
	return &mongoPITR{t: t, src: src, c: c, repo: repo, log: slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

// stream runs the streamer as the CLI does: under the stream lock.
func (p *mongoPITR) stream() {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan error, 1)
	cfg := oplog.Config{Repo: p.repo, Source: p.src.URL(), FlushInterval: 100 * time.Millisecond, Log: p.log,
		Progress: func(d oplog.TS) { p.mu.Lock(); p.dur = d; p.mu.Unlock() }}
	go func() {
		p.done <- p.repo.WithLock(ctx, "stream-mongodb", archive.LockOptions{}, func(ctx context.Context) error {
			return oplog.Stream(ctx, cfg)
		})
	}()
	p.t.Cleanup(p.stop)
}

func (p *mongoPITR) stop() {
	if p.cancel != nil {
		p.cancel()
		if err := <-p.done; err != nil {
			p.t.Errorf("stream: %v", err)
		}
		p.cancel = nil
	}
}

// waitDurable waits until every entry in the server's oplog is in the
// archive: FerretDB can make an entry visible after later ones, so
// reaching the newest timestamp is not enough.
func (p *mongoPITR) waitDurable() {
	p.t.Helper()
	ctx := context.Background()
	var missing int
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		cur, err := p.c.Database("local").Collection("oplog.rs").Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
		if err != nil {
			p.t.Fatal(err)
		}
		want := map[string]bool{}
		for cur.Next(ctx) {
			want["id:"+cur.Current.Lookup("_id").String()] = true
		}
		if cur.Err() != nil {
			p.t.Fatal(cur.Err())
		}
		for _, k := range p.archivedKeys() {
			delete(want, k)
		}
		if missing = len(want); missing == 0 {
			return
		}
	}
	p.t.Fatalf("%d oplog entries not archived within 30s", missing)
}

func (p *mongoPITR) archivedKeys() []string {
	p.t.Helper()
	ctx := context.Background()
	chain, err := p.repo.ReadStream(ctx, oplog.StreamName("rs0"))
	if err != nil {
		p.t.Fatal(err)
	}
	var keys []string
	for _, s := range chain.Segments {
		rc, err := p.repo.OpenSegment(ctx, s)
		if errors.Is(err, archive.ErrNotExist) {
			continue // consolidated meanwhile: the next round reads it
		}
		if err != nil {
			p.t.Fatal(err)
		}
		r := oplog.NewSegmentReader(rc)
		for {
			e, err := r.Next()
			if err != nil {
				break
			}
			keys = append(keys, e.Key)
		}
		rc.Close()
	}
	return keys
}

// mongoMark is a quiet moment between phases: the state's hash, the newest
// oplog ts and a wall-clock time strictly between the phases' writes.
type mongoMark struct {
	hash string
	ts   oplog.TS
	at   time.Time
}

func (p *mongoPITR) mark() mongoMark {
	p.t.Helper()
	time.Sleep(20 * time.Millisecond)
	ts, _, err := oplog.Newest(context.Background(), p.c)
	if err != nil {
		p.t.Fatal(err)
	}
	m := mongoMark{hash: stateHash(p.t, p.c), ts: ts, at: time.Now()}
	time.Sleep(20 * time.Millisecond)
	return m
}

func stateHash(t *testing.T, c *mongo.Client) string {
	t.Helper()
	h, err := testenv.MongoStateHash(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func sortStrings(s []string) { sort.Strings(s) }

// phase writes concurrently from four clients: inserts, $set updates,
// $unset, replaceOne and deletes over ids [lo, hi), and a new collection.
func (p *mongoPITR) phase(n int, lo, hi int) {
	p.t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(n), uint64(w)))
			a := p.c.Database("app").Collection("a")
			for i := lo + w; i < hi; i += 4 {
				var err error
				switch i % 5 {
				case 0, 1:
					_, err = a.InsertOne(ctx, bson.D{{Key: "_id", Value: n*100000 + i}, {Key: "phase", Value: n}, {Key: "v", Value: r.Int64()}, {Key: "tags", Value: bson.A{"x", i}}})
				case 2:
					_, err = a.UpdateOne(ctx, bson.D{{Key: "_id", Value: i % 97}}, bson.D{{Key: "$set", Value: bson.D{{Key: "seen", Value: n}, {Key: "sub.k", Value: i}}}})
				case 3:
					_, err = a.ReplaceOne(ctx, bson.D{{Key: "_id", Value: i % 89}}, bson.D{{Key: "replaced", Value: n}, {Key: "w", Value: w}})
				case 4:
					if i%2 == 0 {
						_, err = a.DeleteOne(ctx, bson.D{{Key: "_id", Value: i % 83}})
					} else {
						_, err = a.UpdateOne(ctx, bson.D{{Key: "_id", Value: i % 79}}, bson.D{{Key: "$unset", Value: bson.D{{Key: "v", Value: ""}}}})
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		p.t.Fatal(err)
	}
	coll := p.c.Database(fmt.Sprintf("db%d", n)).Collection("new")
	if _, err := coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: "x"}, {Key: "n", Value: n}}, bson.D{{Key: "_id", Value: "y"}}}); err != nil {
		p.t.Fatal(err)
	}
}

// schema creates what a base backup must carry besides documents: a
// capped collection and secondary indexes (unique, compound, sparse).
func (p *mongoPITR) schema() {
	p.t.Helper()
	ctx := context.Background()
	db := p.c.Database("app")
	if err := db.CreateCollection(ctx, "capped", options.CreateCollection().SetCapped(true).SetSizeInBytes(1<<20)); err != nil {
		p.t.Fatal(err)
	}
	if _, err := db.Collection("capped").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "log", Value: "x"}}); err != nil {
		p.t.Fatal(err)
	}
	if _, err := db.Collection("a").Indexes().CreateMany(ctx, []mongo.IndexModel{
		{Keys: bson.D{{Key: "phase", Value: 1}, {Key: "v", Value: -1}}},
		{Keys: bson.D{{Key: "tags", Value: 1}}, Options: options.Index().SetSparse(true)},
		{Keys: bson.D{{Key: "uniq", Value: 1}}, Options: options.Index().SetUnique(true).SetName("uniq_idx")},
	}); err != nil {
		p.t.Fatal(err)
	}
}

// schemaOf describes collections' options and indexes for comparison.
func schemaOf(t *testing.T, c *mongo.Client) string {
	t.Helper()
	ctx := context.Background()
	cur, err := c.Database("app").ListCollections(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for cur.Next(ctx) {
		name := cur.Current.Lookup("name").StringValue()
		out = append(out, name+" "+cur.Current.Lookup("options").String())
		specs, err := c.Database("app").Collection(name).Indexes().ListSpecifications(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range specs {
			out = append(out, fmt.Sprintf("%s index %s %s unique=%v sparse=%v", name, s.Name, s.KeysDocument, s.Unique != nil && *s.Unique, s.Sparse != nil && *s.Sparse))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func (p *mongoPITR) backup() *mongobackup.Result {
	p.t.Helper()
	ctx := context.Background()
	var res *mongobackup.Result
	err := p.repo.WithLock(ctx, "maintenance", archive.LockOptions{}, func(ctx context.Context) error {
		var err error
		res, err = mongobackup.Backup(ctx, mongobackup.Config{Repo: p.repo, Source: p.src.URL(), Jobs: 2, Log: p.log})
		return err
	})
	if err != nil {
		p.t.Fatalf("backup: %v", err)
	}
	return res
}

// restoreInto restores to `to` into a fresh server, as FerretDB runs by
// default (no oplog), and returns its hash.
func (p *mongoPITR) restoreInto(to Target) (string, *Result) {
	p.t.Helper()
	target := testenv.NewFerretDBDefault(p.t)
	res, err := Restore(context.Background(), Config{Repo: p.repo, TargetURL: target.URL(), To: to, Jobs: 3, Log: p.log})
	if err != nil {
		p.t.Fatalf("restore to %s: %v", to, err)
	}
	c, err := target.Client(context.Background())
	if err != nil {
		p.t.Fatal(err)
	}
	defer c.Disconnect(context.Background())
	if got, want := schemaOf(p.t, c), schemaOf(p.t, p.c); got != want {
		p.t.Errorf("restored collections and indexes:\n%s\nsource:\n%s", got, want)
	}
	return stateHash(p.t, c), res
}

func TestMongoPITRFerretDB(t *testing.T) {
	p := newMongoPITR(t)
	p.stream()
	p.schema()
	p.phase(0, 0, 400)
	b := p.backup()
	if b.Meta.Flavour != oplog.FlavourFerretDB || b.Meta.Documents == 0 {
		t.Fatalf("backup meta = %+v", b.Meta)
	}
	mA := p.mark()
	p.phase(1, 300, 450)
	mB := p.mark()
	p.phase(2, 600, 750)
	mC := p.mark()
	p.phase(3, 0, 100)
	final := p.mark()
	p.waitDurable()
	p.stop()

	for _, tc := range []struct {
		name string
		to   Target
		want mongoMark
	}{
		{"ts A (the base's end)", Target{TS: mA.ts}, mA},
		{"ts B", Target{TS: mB.ts}, mB},
		{"time C", Target{Time: mC.at}, mC},
		{"latest", Target{Latest: true}, final},
	} {
		start := time.Now()
		got, res := p.restoreInto(tc.to)
		t.Logf("restore to %s: %d documents, %d ops (%d segments) in %s", tc.name, res.Documents, res.Ops, len(res.Plan.Segments), time.Since(start))
		if got != tc.want.hash {
			t.Errorf("restore to %s: state differs from the mark (replayed %d ops, last %s)", tc.name, res.Ops, res.Last)
		}
		if res.Plan.Backup.ID != b.Manifest.ID {
			t.Errorf("restore to %s used backup %s", tc.name, res.Plan.Backup.ID)
		}
	}
	// Interrupted during the replay (Ctrl-C): the error says what the
	// target holds and how to start again, and --force does.
	target := testenv.NewFerretDBDefault(t)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := Config{Repo: p.repo, TargetURL: target.URL(), To: Target{Latest: true}, Jobs: 3, Log: p.log,
		Progress: func(phase string, done, total int64) {
			if phase == "replay" {
				cancel()
			}
		}}
	_, err := Restore(ctx, cfg)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "was interrupted part way: the target holds collections app.") ||
		!strings.Contains(err.Error(), "--force") {
		t.Fatalf("interrupted restore: %v", err)
	}
	cfg.Force, cfg.Progress = true, nil
	if _, err := Restore(context.Background(), cfg); err != nil {
		t.Fatalf("restore again with --force: %v", err)
	}
	c, err := target.Client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(context.Background())
	if got := stateHash(t, c); got != final.hash {
		t.Errorf("restore --force after an interrupted one: state differs from the latest mark")
	}
	// Before the base's end: no base reaches it, refused before writing.
	_, err = Restore(context.Background(), Config{Repo: p.repo, TargetURL: "mongodb://127.0.0.1:1/?directConnection=true",
		To: Target{TS: oplog.TS{T: 1}}, Log: p.log})
	if !errors.Is(err, restore.ErrUnreachable) {
		t.Fatalf("restore before the base: %v, want restore.ErrUnreachable", err)
	}
}
