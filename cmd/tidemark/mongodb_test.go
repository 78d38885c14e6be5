package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/file"
	"github.com/tidemark/tidemark/internal/engine/all"
	mgengine "github.com/tidemark/tidemark/internal/engine/mongodb"
	"github.com/tidemark/tidemark/internal/jobs"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/oplog"
)

type mongoCLI struct {
	t        *testing.T
	src      *testenv.FerretDB
	c        *mongo.Client
	repo     string
	key      string
	identity *age.X25519Identity
}

func newMongoCLI(t *testing.T) *mongoCLI {
	t.Helper()
	key, id := keyFile(t)
	repo := filepath.Join(t.TempDir(), "repo")
	expect(t, 0, "init", "--repo", repo, "--recipient", id.Recipient().String())
	src := testenv.NewFerretDB(t)
	c, err := src.Client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(context.Background()) })
	return &mongoCLI{t: t, src: src, c: c, repo: repo, key: key, identity: id}
}

func (m *mongoCLI) openRepo() *archive.Repository {
	m.t.Helper()
	s, err := file.Open(m.repo)
	if err != nil {
		m.t.Fatal(err)
	}
	r, err := archive.Open(context.Background(), s, archive.Keys{Identities: []age.Identity{m.identity}})
	if err != nil {
		m.t.Fatal(err)
	}
	return r
}

// waitArchived waits until every entry in the server's oplog is in the
// archive (FerretDB can make an entry visible after later ones).
func (m *mongoCLI) waitArchived(exited chan error) {
	m.t.Helper()
	ctx := context.Background()
	missing := -1
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-exited:
			m.t.Fatalf("streamer exited: %v", err)
		default:
		}
		cur, err := m.c.Database("local").Collection("oplog.rs").Find(ctx, bson.D{})
		if err != nil {
			m.t.Fatal(err)
		}
		want := map[string]bool{}
		for cur.Next(ctx) {
			want["id:"+cur.Current.Lookup("_id").String()] = true
		}
		for _, k := range m.archivedKeys() {
			delete(want, k)
		}
		if missing = len(want); missing == 0 {
			return
		}
	}
	m.t.Fatalf("%d oplog entries not archived within 30s", missing)
}

// archivedKeys lists the keys of every archived entry.
func (m *mongoCLI) archivedKeys() []string {
	m.t.Helper()
	ctx := context.Background()
	r := m.openRepo()
	chain, err := r.ReadStream(ctx, oplog.StreamName("rs0"))
	if err != nil {
		m.t.Fatal(err)
	}
	var keys []string
	for _, s := range chain.Segments {
		rc, err := r.OpenSegment(ctx, s)
		if err != nil {
			return nil // consolidated meanwhile: the next round reads it
		}
		sr := oplog.NewSegmentReader(rc)
		for {
			e, err := sr.Next()
			if err != nil {
				break
			}
			keys = append(keys, e.Key)
		}
		rc.Close()
	}
	return keys
}

func (m *mongoCLI) startStream(bin string) (*exec.Cmd, chan error) {
	m.t.Helper()
	cmd := exec.Command(bin, "stream", "--repo", m.repo, "--source", m.src.URL(), "--flush-interval", "100ms")
	cmd.Stdout, cmd.Stderr = testLogWriter{m.t}, testLogWriter{m.t}
	if err := cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	m.t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, exited
}

// TestMongoStreamKill9Backup: the streamer killed with -9 mid-load and
// restarted leaves no gap; backup and restore --latest through the CLI
// reproduce the source exactly.
func TestMongoStreamKill9Backup(t *testing.T) {
	m := newMongoCLI(t)
	bin := testenv.TidemarkBinary(t)
	ctx := context.Background()
	coll := m.c.Database("app").Collection("load")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: -1}}); err != nil {
		t.Fatal(err)
	}
	stream, exited := m.startStream(bin)
	m.waitArchived(exited)
	out, _ := expect(t, 0, "backup", "--repo", m.repo, "--source", m.src.URL(), "--json", "--jobs", "2")
	var b struct {
		Backup   string `json:"backup"`
		Flavour  string `json:"flavour"`
		ArchBy   string `json:"oplog_archived_by"`
		Docs     int64  `json:"documents"`
		StartTS  string `json:"start_ts"`
		StopTS   string `json:"stop_ts"`
		Logical  int64  `json:"logical_bytes"`
		Collects int    `json:"collections"`
	}
	if err := json.Unmarshal([]byte(out), &b); err != nil || b.Flavour != "ferretdb" || (b.ArchBy != "streamer" && b.ArchBy != "none needed") || b.Docs != 1 {
		t.Fatalf("backup --json: %v %s", err, out)
	}
	// Load from a writer while the streamer dies without flushing.
	var written atomic.Int64
	stop := make(chan struct{})
	loadDone := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				loadDone <- nil
				return
			default:
			}
			var err error
			if i%3 == 2 {
				_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: i - 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "u", Value: i}}}})
			} else {
				_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}, {Key: "v", Value: fmt.Sprint("value ", i)}})
			}
			if err != nil {
				loadDone <- err
				return
			}
			written.Add(1)
		}
	}()
	for written.Load() < 150 {
		time.Sleep(10 * time.Millisecond)
	}
	if err := stream.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	killedAt := written.Load()
	for written.Load() < killedAt+150 {
		time.Sleep(10 * time.Millisecond)
	}
	stream, exited = m.startStream(bin)
	for written.Load() < killedAt+300 {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	if err := <-loadDone; err != nil {
		t.Fatal(err)
	}
	m.waitArchived(exited)
	stream.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Fatalf("streamer after SIGTERM: %v", err)
	}
	chain, err := m.openRepo().ReadStream(ctx, oplog.StreamName("rs0"))
	if err != nil || len(chain.Breaks) != 0 {
		t.Fatalf("stream after kill -9: breaks %v, %v", chain.Breaks, err)
	}
	want, err := testenv.MongoStateHash(ctx, m.c)
	if err != nil {
		t.Fatal(err)
	}
	target := testenv.NewFerretDB(t)
	out, errs := expect(t, 0, "restore", "--repo", m.repo, "--identity-file", m.key, "--target", target.URL(), "--latest", "--jobs", "2")
	if !strings.Contains(out, "restored backup "+b.Backup) {
		t.Fatalf("restore output: %s\n%s", out, errs)
	}
	tc, err := target.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Disconnect(ctx)
	if got, err := testenv.MongoStateHash(ctx, tc); err != nil || got != want {
		t.Fatalf("restored state differs from the source (%v); %d writes; restore said:\n%s", err, written.Load(), out)
	}
	// A second restore into the same target is refused before writing.
	_, errs = expect(t, exitTargetHoldsData, "restore", "--repo", m.repo, "--identity-file", m.key, "--target", target.URL(), "--latest")
	if !strings.Contains(errs, "app.load") || !strings.Contains(errs, "--force") {
		t.Fatalf("restore over existing collections: %s", errs)
	}
	expect(t, 0, "restore", "--repo", m.repo, "--identity-file", m.key, "--target", target.URL(), "--latest", "--force")
	if got, err := testenv.MongoStateHash(ctx, tc); err != nil || got != want {
		t.Fatalf("restored state after --force differs from the source (%v)", err)
	}
	// Refusals name what is wrong, before anything is written.
	_, errs = expect(t, 7, "restore", "--repo", m.repo, "--identity-file", m.key, "--target", target.URL(), "--to-ts", "1:1", "--force")
	if !strings.Contains(errs, "no MongoDB base backup") {
		t.Fatalf("restore before the first base: %s", errs)
	}
	_, errs = expect(t, 7, "restore", "--repo", m.repo, "--identity-file", m.key, "--target", target.URL(), "--to-time", "2099-01-01T00:00:00Z", "--force")
	if !strings.Contains(errs, "archived oplog:") {
		t.Fatalf("restore past the archive: %s", errs)
	}
	expect(t, 2, "restore", "--repo", m.repo, "--identity-file", m.key, "--target", target.URL(), "--to-ts", "yesterday")
	expect(t, 2, "restore", "--repo", m.repo, "--identity-file", m.key, "--target", target.URL(), "--to-lsn", "0/1")
}

// TestMongoIdleSourceWindow: on an idle source the newest change is older
// than the newest backup; the streamer's heartbeat says the archive still
// held everything at a later time, so status shows the streamer healthy
// with a small RPO, and a restore to a moment after that backup (and
// after the newest change) restores the source's state.
func TestMongoIdleSourceWindow(t *testing.T) {
	m := newMongoCLI(t)
	insertIDs(t, m.c.Database("app").Collection("idle"), 0, 3)
	stream, exited := m.startStream(testenv.TidemarkBinary(t))
	defer func() {
		stream.Process.Signal(syscall.SIGTERM)
		<-exited
	}()
	m.waitArchived(exited)
	time.Sleep(1100 * time.Millisecond) // the backup ends a second after the newest change at least
	expect(t, 0, "backup", "--repo", m.repo, "--source", m.src.URL())
	var st jobs.StatusReport
	// A quiet FerretDB is read about once a minute (each read scans its
	// whole oplog), and each read moves the caught-up time.
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		st = statusOf(t, m.repo)
		if len(st.Streams) == 1 && len(st.Backups) == 1 && st.Streams[0].CaughtUp != nil && st.Streams[0].CaughtUp.After(st.Backups[0].Finished) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed the stream caught up after the backup: %+v\n%+v", st.Streams, st.Backups)
		}
	}
	if s := st.Streams[0]; !s.Latest.Before(st.Backups[0].Finished) || s.RecoverableTo == nil || !s.RecoverableTo.Equal(*s.CaughtUp) || s.RPOSec >= s.AgeSec ||
		len(st.Streamers) != 1 || st.Streamers[0].Health == jobs.HealthDown {
		t.Fatalf("status of an idle source: %+v\n%+v", st.Streams, st.Streamers)
	}
	at := st.Backups[0].Finished.Add(st.Streams[0].CaughtUp.Sub(st.Backups[0].Finished) / 2)
	m.restoreMatches("--to-time", at.Format(time.RFC3339Nano))
}

// TestMongoBackupBeforeStream: a base taken before any streamer ran is
// continued by the first streamer from the base's start, so writes made in
// between are not lost.
func TestMongoBackupBeforeStream(t *testing.T) {
	m := newMongoCLI(t)
	ctx := context.Background()
	coll := m.c.Database("app").Collection("early")
	insertIDs(t, coll, 0, 20)
	expect(t, 0, "backup", "--repo", m.repo, "--source", m.src.URL())
	expect(t, 2, "backup", "--repo", m.repo, "--source", m.src.URL(), "--type", "incremental")
	for i := 20; i < 40; i++ { // before any streamer runs
		if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: i - 20}}, bson.D{{Key: "$set", Value: bson.D{{Key: "late", Value: i}}}}); err != nil {
			t.Fatal(err)
		}
	}
	stream, exited := m.startStream(testenv.TidemarkBinary(t))
	m.waitArchived(exited)
	stream.Process.Signal(syscall.SIGTERM)
	<-exited
	m.restoreMatches("--latest")
	out, _ := expect(t, 0, "status", "--repo", m.repo)
	if !strings.Contains(out, "oplog       oplog/rs0 (ferretdb)") {
		t.Fatalf("status: %s", out)
	}
}

// TestMongoStreamExitCodes: a second streamer is refused (9), a rolled
// over oplog is a gap (6) that status-level code can see.
func TestMongoStreamExitCodes(t *testing.T) {
	m := newMongoCLI(t)
	ctx := context.Background()
	if _, err := m.c.Database("app").Collection("x").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	r := m.openRepo()
	lock, _, err := r.AcquireLock(ctx, mgengine.New().Info().StreamLock, archive.LockOptions{Purpose: "test"})
	if err != nil {
		t.Fatal(err)
	}
	_, errs := expect(t, 9, "stream", "--repo", m.repo, "--source", m.src.URL())
	if !strings.Contains(errs, "locked") {
		t.Fatalf("second streamer: %s", errs)
	}
	// Archive up to now, then let the oplog lose what follows.
	err = oplog.Stream(ctx, oplog.Config{Repo: r, Source: m.src.URL(), FlushInterval: 50 * time.Millisecond, Until: mustNewest(t, m.c)})
	if err != nil {
		t.Fatal(err)
	}
	lock.Unlock(ctx)
	for i := 2; i < 5; i++ {
		m.c.Database("app").Collection("x").InsertOne(ctx, bson.D{{Key: "_id", Value: i}})
	}
	newest := mustNewest(t, m.c)
	if _, err := m.c.Database("local").Collection("oplog.rs").DeleteMany(ctx, bson.D{{Key: "ts", Value: bson.D{{Key: "$lt", Value: newest.BSON()}}}}); err != nil {
		t.Fatal(err)
	}
	_, errs = expect(t, 6, "stream", "--repo", m.repo, "--source", m.src.URL())
	if !strings.Contains(errs, "rolled over") {
		t.Fatalf("stream after rollover: %s", errs)
	}
	st, err := mongoStatus(ctx, r)
	if err != nil || len(st.Gaps) != 1 || st.Gaps[0].To != newest.String() {
		t.Fatalf("status after rollover: %+v, %v", st, err)
	}
	problems, err := mgengine.New().Verify(ctx, r)
	if err != nil || len(problems) != 0 {
		t.Fatalf("verify with no base and one span: %v, %v", problems, err)
	}
	if len(st.Spans) != 1 || len(st.Breaks) != 0 {
		t.Fatalf("status spans %+v", st)
	}
	// The remedy: a new base. The next streamer continues from its start
	// (the chain shows the break) and the base restores to the latest.
	expect(t, 0, "backup", "--repo", m.repo, "--source", m.src.URL())
	stream, exited := m.startStream(testenv.TidemarkBinary(t))
	insertIDs(t, m.c.Database("app").Collection("x"), 10, 20)
	m.waitArchived(exited)
	stream.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Fatalf("streamer after the new base: %v", err)
	}
	if st, err = mongoStatus(ctx, r); err != nil || len(st.Spans) != 2 || len(st.Breaks) != 1 {
		t.Fatalf("status after the new base: %+v, %v", st, err)
	}
	if problems, err := mgengine.New().Verify(ctx, r); err != nil || len(problems) != 0 {
		t.Fatalf("verify after the new base: %v, %v", problems, err)
	}
	m.restoreMatches("--latest")
}

// oplogStatus is the MongoDB part of status: the oplog's spans and breaks
// and the gaps its streamer recorded.
type oplogStatus struct {
	mgengine.OplogDetail
	Gaps []archive.GapRecord
}

func mongoStatus(ctx context.Context, r *archive.Repository) (*oplogStatus, error) {
	rep, err := jobs.Status(ctx, all.Registry(), r, time.Now())
	if err != nil {
		return nil, err
	}
	st := &oplogStatus{}
	for _, s := range rep.Streams {
		if d, ok := s.Detail.(mgengine.OplogDetail); ok {
			st.OplogDetail = d
		}
	}
	for _, g := range rep.Gaps {
		if g.Engine == "mongodb" {
			st.Gaps = append(st.Gaps, g)
		}
	}
	return st, nil
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func mustNewest(t *testing.T, c *mongo.Client) oplog.TS {
	t.Helper()
	ts, ok, err := oplog.Newest(context.Background(), c)
	if err != nil || !ok {
		t.Fatalf("newest oplog entry: %v %v", ok, err)
	}
	return ts
}

// insertIDs inserts documents with _id from to to-1.
func insertIDs(t *testing.T, coll *mongo.Collection, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := coll.InsertOne(context.Background(), bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
}

// restoreMatches restores the repository into a fresh FerretDB with the
// given target arguments and checks that it holds the source's state.
func (m *mongoCLI) restoreMatches(target ...string) {
	m.t.Helper()
	ctx := context.Background()
	want, err := testenv.MongoStateHash(ctx, m.c)
	if err != nil {
		m.t.Fatal(err)
	}
	dst := testenv.NewFerretDB(m.t)
	expect(m.t, 0, append([]string{"restore", "--repo", m.repo, "--identity-file", m.key, "--target", dst.URL()}, target...)...)
	c, err := dst.Client(ctx)
	if err != nil {
		m.t.Fatal(err)
	}
	defer c.Disconnect(ctx)
	if got, err := testenv.MongoStateHash(ctx, c); err != nil || got != want {
		m.t.Fatalf("restored state (%s) differs from the source (%v)", strings.Join(target, " "), err)
	}
}
