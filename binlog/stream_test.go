package binlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/file"

	"github.com/tidemark/tidemark/internal/testenv"
)

func TestStreamMatchesServerBinlog(t *testing.T) {
	db := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	f := newFixture(t, db)
	stop, _ := f.stream(f.config())
	c := f.conn()
	exec(t, c, "CREATE DATABASE shop", "CREATE TABLE shop.items (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100), price DECIMAL(10,2), note TEXT)",
		"INSERT INTO shop.items (name, price) VALUES ('a', 1.50), ('b', 2.25)",
		"BEGIN", "INSERT INTO shop.items (name, price) VALUES ('c', 3)", "UPDATE shop.items SET note = REPEAT('x', 5000) WHERE id = 1",
		"DELETE FROM shop.items WHERE id = 2", "COMMIT",
		"ALTER TABLE shop.items ADD COLUMN qty INT DEFAULT 7", "FLUSH BINARY LOGS",
		"INSERT INTO shop.items (name, price, qty) VALUES ('d', 4, 1)")
	f.waitDurable(streamOf(db), masterPos(t, db))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	n := f.compareWithServer(streamOf(db))
	t.Logf("%d events identical", n)
	if n < 20 {
		t.Fatalf("only %d events archived", n)
	}
}

// TestStreamResumes: stopping and restarting the streamer, and restarting
// the server under it, leave no gap and no duplicate.
func TestStreamResumes(t *testing.T) {
	db := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	f := newFixture(t, db)
	c := f.conn()
	exec(t, c, "CREATE DATABASE d", "CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(20))")
	stop, _ := f.stream(f.config())
	exec(t, c, "INSERT INTO d.t VALUES (1, 'a')")
	f.waitDurable(streamOf(db), masterPos(t, db))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	exec(t, c, "INSERT INTO d.t VALUES (2, 'b')", "INSERT INTO d.t VALUES (3, 'c')")
	stop, _ = f.stream(f.config())
	exec(t, c, "INSERT INTO d.t VALUES (4, 'd')")
	f.waitDurable(streamOf(db), masterPos(t, db))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	n := f.compareWithServer(streamOf(db))
	t.Logf("%d events identical", n)
}

// TestStreamSurvivesServerCrash: the server killed and restarted under
// load; the streamer reconnects and the archive is still exactly the
// server's binlog (which now spans a new file).
func TestStreamSurvivesServerCrash(t *testing.T) {
	db := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	f := newFixture(t, db)
	c := f.conn()
	exec(t, c, "CREATE DATABASE d", "CREATE TABLE d.t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(50))")
	stop, _ := f.stream(f.config())
	load := func(n int) {
		c, err := db.Conn()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for i := range n {
			exec(t, c, fmt.Sprintf("INSERT INTO d.t (v) VALUES ('row %d')", i))
		}
	}
	load(50)
	db.Kill()
	if err := db.Start(); err != nil {
		t.Fatal(err)
	}
	load(50)
	c2, err := db.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	f.waitDurable(streamOf(db), masterPos(t, db))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := f.compareWithServer(streamOf(db)); n < 100*4 {
		t.Fatalf("only %d events archived", n)
	}
}

// TestPurgedBinlogIsAGap: when the binlog the archive must continue from
// was purged on the server, streaming stops with ErrGap and the gap is
// recorded for status.
func TestPurgedBinlogIsAGap(t *testing.T) {
	db := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	f := newFixture(t, db)
	c := f.conn()
	exec(t, c, "CREATE DATABASE d", "CREATE TABLE d.t (id INT PRIMARY KEY)")
	stop, _ := f.stream(f.config())
	exec(t, c, "INSERT INTO d.t VALUES (1)")
	f.waitDurable(streamOf(db), masterPos(t, db))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	exec(t, c, "INSERT INTO d.t VALUES (2)", "FLUSH BINARY LOGS", "INSERT INTO d.t VALUES (3)")
	file := masterPos(t, db).File
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		// MariaDB keeps a file its binlog checkpoint has not passed, with
		// only a note: retry until it is gone.
		exec(t, c, "PURGE BINARY LOGS TO '"+file+"'")
		r, err := c.Execute("SHOW BINARY LOGS")
		if err != nil {
			t.Fatal(err)
		}
		if first, _ := r.GetString(0, 0); first == file {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("binlogs before %s were not purged", file)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := Stream(ctx, f.config())
	if !errors.Is(err, ErrGap) || !errors.Is(err, archive.ErrGap) {
		t.Fatalf("stream after purge: %v, want ErrGap (of the shared gap class)", err)
	}
	gaps, err := f.repo.Gaps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(gaps) != 1 || gaps[0].Engine != "mysql" || gaps[0].From == "" {
		t.Fatalf("recorded gaps: %+v", gaps)
	}
}

// deadStore is the repository's store as seen by a process that died: once
// dead, nothing more it writes or deletes reaches the store.
type deadStore struct {
	archive.Store
	dead atomic.Bool
}

var errDead = errors.New("process died")

func (s *deadStore) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if s.dead.Load() {
		return errDead
	}
	return s.Store.Put(ctx, name, r, size)
}

func (s *deadStore) Delete(ctx context.Context, name string) error {
	if s.dead.Load() {
		return errDead
	}
	return s.Store.Delete(ctx, name)
}

// TestStreamResumesAfterCrash: a streamer that dies mid-load (appended but
// unflushed events lost, small segments left unconsolidated) is restarted
// and continues from the durable position: no gap, no duplicate.
func TestStreamResumesAfterCrash(t *testing.T) {
	db := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	f := newFixture(t, db)
	c := f.conn()
	exec(t, c, "CREATE DATABASE d", "CREATE TABLE d.t (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT)")
	ctx := context.Background()
	fs, err := file.Open(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	ds := &deadStore{Store: fs}
	crashing, err := archive.Open(ctx, ds, f.keys)
	if err != nil {
		t.Fatal(err)
	}
	cfg := f.config()
	cfg.Repo = crashing
	durable := make(chan struct{}, 1)
	cfg.Progress = func(Progress) {
		select {
		case durable <- struct{}{}:
		default:
		}
	}
	stop, _ := f.stream(cfg)
	for i := range 200 {
		exec(t, c, fmt.Sprintf("INSERT INTO d.t (v) VALUES (REPEAT('x', %d))", i*10))
		if i == 100 {
			<-durable // something is durable, more is in flight
		}
	}
	ds.dead.Store(true)
	if err := stop(); err == nil {
		t.Fatal("a streamer that could not write its final flush reported a clean stop")
	}
	exec(t, c, "INSERT INTO d.t (v) VALUES ('after the crash')")
	stop, _ = f.stream(f.config())
	f.waitDurable(streamOf(db), masterPos(t, db))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	f.compareWithServer(streamOf(db))
}

// TestCoverageNamesMissingSegment: a segment missing from the middle of
// the archive is refused by CheckCoverage for any target past it, naming
// the missing range, while targets before it stay reachable.
func TestCoverageNamesMissingSegment(t *testing.T) {
	db := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	f := newFixture(t, db)
	c := f.conn()
	stop, _ := f.stream(f.config())
	exec(t, c, "CREATE DATABASE g", "CREATE TABLE g.t (id INT PRIMARY KEY)", "FLUSH BINARY LOGS",
		"INSERT INTO g.t VALUES (1)", "FLUSH BINARY LOGS", "INSERT INTO g.t VALUES (2)")
	f.waitDurable(streamOf(db), masterPos(t, db))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	chain, err := f.repo.ReadStream(ctx, streamOf(db))
	if err != nil || len(chain.Segments) < 3 {
		t.Fatalf("want at least 3 segments: %+v %v", chain, err)
	}
	from := Position{File: "mysql-bin.000001", Pos: 4}
	if err := CheckCoverage(ctx, f.repo, from, Target{Latest: true}); err != nil {
		t.Fatalf("complete archive: %v", err)
	}
	mid := chain.Segments[1]
	for _, dir := range []string{"/idx/", "/seg/"} {
		if err := f.repo.Store().Delete(ctx, fmt.Sprintf("%s%s%016x-%016x", mid.Stream, dir, mid.First, mid.Last)); err != nil {
			t.Fatal(err)
		}
	}
	err = CheckCoverage(ctx, f.repo, from, Target{Latest: true})
	if !errors.Is(err, ErrNotCovered) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("archive with segment %d missing: %v, want ErrNotCovered naming the range", mid.First, err)
	}
	t.Log(err)
	last, _ := chain.Last()
	if err := CheckCoverage(ctx, f.repo, from, Target{Time: last.LastTime}); !errors.Is(err, ErrNotCovered) {
		t.Fatalf("time past the hole: %v", err)
	}
	before, _ := ParsePosition(chain.Segments[0].End)
	if err := CheckCoverage(ctx, f.repo, from, Target{Position: before}); err != nil {
		t.Fatalf("target before the hole: %v", err)
	}
	if _, err := NewReader(ctx, f.repo, from, Target{Latest: true}); !errors.Is(err, ErrNotCovered) {
		t.Fatalf("reader across the hole: %v", err)
	}
}

// TestProgressForTransactionBiggerThanASegment: a transaction larger than
// a segment is made durable inside Append, and Progress says so at once,
// without waiting for a flush (here an hour away).
func TestProgressForTransactionBiggerThanASegment(t *testing.T) {
	db := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	f := newFixture(t, db)
	c := f.conn()
	exec(t, c, "CREATE DATABASE d", "CREATE TABLE d.t (id INT PRIMARY KEY, v LONGTEXT)")
	var durable atomic.Value
	cfg := f.config()
	// No flush and no heartbeat for an hour: only Append can make it durable.
	cfg.FlushInterval, cfg.Heartbeat, cfg.MaxSegmentBytes = time.Hour, time.Hour, 64<<10
	cfg.Progress = func(p Progress) { durable.Store(p.Durable) }
	stop, _ := f.stream(cfg)
	defer stop()
	exec(t, c, "INSERT INTO d.t VALUES (1, REPEAT('x', 300000))")
	want := masterPos(t, db)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if p, ok := durable.Load().(Position); ok && !p.before(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress reported up to %s (last: %v)", want, durable.Load())
		}
	}
}
