package oplog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type fixture struct {
	t    *testing.T
	f    *testenv.FerretDB
	repo *archive.Repository
	c    *mongo.Client
}

func newFixture(t *testing.T, f *testenv.FerretDB) *fixture {
	t.Helper()
	ctx := context.Background()
	repo := testenv.NewRepo(t).Repository
	c, err := f.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(context.Background()) })
	return &fixture{t: t, f: f, repo: repo, c: c}
}

func (x *fixture) config() Config {
	return Config{Repo: x.repo, Source: x.f.URL(), FlushInterval: 100 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(testWriter{x.t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

// streamer runs Stream in the background and reports the durable end.
type streamer struct {
	cancel  context.CancelFunc
	done    chan error
	mu      sync.Mutex
	durable TS
}

func (x *fixture) start(cfg Config) *streamer {
	ctx, cancel := context.WithCancel(context.Background())
	s := &streamer{cancel: cancel, done: make(chan error, 1)}
	cfg.Progress = func(d TS) {
		s.mu.Lock()
		s.durable = d
		s.mu.Unlock()
	}
	go func() { s.done <- Stream(ctx, cfg) }()
	return s
}

func (s *streamer) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	if err := <-s.done; err != nil {
		t.Fatalf("stream: %v", err)
	}
}

// waitDurable waits until everything in the server's oplog is durable.
func (x *fixture) waitDurable(s *streamer) {
	x.t.Helper()
	newest, ok, err := Newest(context.Background(), x.c)
	if err != nil || !ok {
		x.t.Fatalf("newest oplog entry: %v %v", ok, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		d := s.durable
		s.mu.Unlock()
		if !d.Less(newest) {
			return
		}
		select {
		case err := <-s.done:
			x.t.Fatalf("streamer stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	x.t.Fatalf("oplog up to %s not durable within 30s", newest)
}

// archived reads every entry of the stream.
func (x *fixture) archived() []Entry {
	x.t.Helper()
	ctx := context.Background()
	chain, err := x.repo.ReadStream(ctx, StreamName("rs0"))
	if err != nil {
		x.t.Fatal(err)
	}
	if len(chain.Breaks) > 0 {
		x.t.Fatalf("breaks: %v", chain.Breaks)
	}
	var out []Entry
	for _, s := range chain.Segments {
		rc, err := x.repo.OpenSegment(ctx, s)
		if err != nil {
			x.t.Fatal(err)
		}
		r := NewSegmentReader(rc)
		for {
			e, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				x.t.Fatal(err)
			}
			out = append(out, e)
		}
		rc.Close()
	}
	return out
}

func insert(t *testing.T, c *mongo.Client, coll string, from, n int) {
	t.Helper()
	docs := make([]any, n)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: from + i}, {Key: "v", Value: fmt.Sprint("doc ", from+i)}}
	}
	if _, err := c.Database("app").Collection(coll).InsertMany(context.Background(), docs); err != nil {
		t.Fatal(err)
	}
}

// inserted counts distinct inserted _ids of coll among entries.
func inserted(entries []Entry, ns string) map[string]bool {
	ids := map[string]bool{}
	for _, e := range entries {
		if e.Op == "i" && e.NS == ns {
			ids[fmt.Sprint(e.O.Lookup("_id").AsInt64())] = true
		}
	}
	return ids
}

func TestStreamArchivesAndResumes(t *testing.T) {
	x := newFixture(t, testenv.NewFerretDB(t))
	ctx := context.Background()
	s := x.start(x.config())
	insert(t, x.c, "a", 0, 50)
	x.waitDurable(s)
	s.stop(t)
	src, err := x.repo.Source(ctx)
	if err != nil || src.Engine != Engine || src.Details["flavour"] != FlavourFerretDB || src.ClusterID != "ferretdb:rs0" {
		t.Fatalf("source = %+v, %v", src, err)
	}
	// Written while no streamer runs: the next one resumes from the
	// archive's end and loses nothing.
	insert(t, x.c, "a", 50, 50)
	s = x.start(x.config())
	insert(t, x.c, "a", 100, 50)
	x.waitDurable(s)
	s.stop(t)
	if got := inserted(x.archived(), "app.a"); len(got) != 150 {
		t.Fatalf("archived %d distinct inserts, want 150", len(got))
	}
}

func TestStreamRolloverIsAGap(t *testing.T) {
	x := newFixture(t, testenv.NewFerretDB(t))
	ctx := context.Background()
	s := x.start(x.config())
	insert(t, x.c, "a", 0, 10)
	x.waitDurable(s)
	s.stop(t)
	// Everything after the archive's end leaves the oplog.
	insert(t, x.c, "a", 10, 10)
	newest, _, err := Newest(ctx, x.c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.c.Database("local").Collection("oplog.rs").DeleteMany(ctx,
		bson.D{{Key: "ts", Value: bson.D{{Key: "$lt", Value: newest.BSON()}}}}); err != nil {
		t.Fatal(err)
	}
	err = Stream(ctx, x.config())
	if !errors.Is(err, ErrRollover) || !errors.Is(err, archive.ErrGap) {
		t.Fatalf("stream after rollover: %v, want ErrRollover (of the shared gap class)", err)
	}
	// Recorded once: by the session, which may also continue past a gap.
	gaps, err := x.repo.Gaps(ctx)
	if err != nil || len(gaps) != 1 || gaps[0].Engine != Engine || gaps[0].To != newest.String() {
		t.Fatalf("gaps = %+v, %v", gaps, err)
	}
}

// TestStreamHoldsBackUncommitted: entries past the majority commit point
// are not archived (they could roll back) until the point passes them.
func TestStreamHoldsBackUncommitted(t *testing.T) {
	x := newFixture(t, testenv.FerretDBServer(t))
	ctx := context.Background()
	insert(t, x.c, "held", 0, 1) // the stream starts after this entry
	var mu sync.Mutex
	commit, _, err := Newest(ctx, x.c) // a replica set's majority point is never zero
	if err != nil {
		t.Fatal(err)
	}
	cfg := x.config()
	cfg.majority = func(context.Context) (TS, bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return commit, true, nil
	}
	s := x.start(cfg)
	insert(t, x.c, "held", 1, 10)
	committed, _, err := Newest(ctx, x.c)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	commit = committed
	mu.Unlock()
	insert(t, x.c, "held", 11, 10) // not majority-committed yet
	time.Sleep(500 * time.Millisecond)
	s.mu.Lock()
	d := s.durable
	s.mu.Unlock()
	if d != committed {
		t.Fatalf("durable %s, want the commit point %s", d, committed)
	}
	newest, _, _ := Newest(ctx, x.c)
	mu.Lock()
	commit = newest
	mu.Unlock()
	x.waitDurable(s)
	s.stop(t)
	got := inserted(x.archived(), "app.held")
	for i := 1; i <= 20; i++ {
		if !got[fmt.Sprint(i)] {
			t.Fatalf("insert %d not archived (%d archived)", i, len(got))
		}
	}
}

// TestStreamFromBeforeAnEmptyOplog: a start no entry precedes is no gap
// while the oplog is empty (a capped collection drops entries only to make
// room), and is one once entries exist that could have pushed others out.
func TestStreamFromBeforeAnEmptyOplog(t *testing.T) {
	x := newFixture(t, testenv.NewFerretDB(t))
	cfg := x.config()
	cfg.StartAt = TS{T: uint32(time.Now().Unix() - 5)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := Stream(ctx, cfg); err != nil {
		t.Fatalf("stream over an empty oplog: %v", err)
	}
	insert(t, x.c, "a", 0, 1)
	if err := Stream(context.Background(), cfg); !errors.Is(err, ErrRollover) {
		t.Fatalf("stream from before the oldest entry: %v, want ErrRollover", err)
	}
}
