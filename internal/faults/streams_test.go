package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tidemark/tidemark/internal/jobs"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/oplog"
)

// streamRepo is a repository of a binlog or oplog stream with a base
// backup and segments after it, to damage copies of.
type streamRepo struct {
	pgRepo         // dir, key and the copy helpers
	target  string // where restores go (the source itself, with --force)
	segment string // a segment data object after the base
}

// waitStream waits until status shows the stream's position satisfying done.
func waitStream(t *testing.T, c cli, repo string, want string, done func(position string) bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		out, errs, code := c.run("status", "--repo", repo, "--json")
		var st jobs.StatusReport
		if code == 0 && json.Unmarshal([]byte(out), &st) == nil && len(st.Streams) == 1 && done(st.Streams[0].Position) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream did not reach %s within a minute; status: exit %d %s\n%+v\n%+v", want, code, errs, st.Streams, st.Streamers)
		}
	}
}

// startStreamRepo makes a repository and starts streaming source into it;
// restores go back to the source.
func startStreamRepo(t *testing.T, source string) (*streamRepo, cli, *proc) {
	t.Helper()
	c := newCLI(t)
	r := &streamRepo{pgRepo: pgRepo{dir: filepath.Join(t.TempDir(), "repo")}, target: source}
	var recipient string
	r.key, recipient = keyFile(t, nil)
	c.expect(0, "init", "--repo", r.dir, "--recipient", recipient)
	return r, c, c.start("stream", "--repo", r.dir, "--source", source, "--flush-interval", "100ms", "--log-level", "warn")
}

func buildBinlogRepo(t *testing.T) *streamRepo {
	t.Helper()
	db := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	r, c, stream := startStreamRepo(t, db.URL())
	db.Exec(t, "CREATE DATABASE app")
	db.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(40))")
	db.Exec(t, "INSERT INTO app.t SELECT seq, MD5(seq) FROM app.seq_1_to_1000")
	c.expect(0, "backup", "--repo", r.dir, "--source", db.URL(), "--log-level", "warn")
	db.Exec(t, "INSERT INTO app.t SELECT seq, MD5(seq) FROM app.seq_1001_to_2000")
	db.Exec(t, "FLUSH BINARY LOGS")
	db.Exec(t, "UPDATE app.t SET v = 'after' WHERE id < 100")
	file, pos := db.BinlogEnd(t)
	want := fmt.Sprintf("%s:%d", file, pos)
	// The server may write more after the update (a binlog checkpoint event,
	// for one), so any position at or past the update's end will do.
	waitStream(t, c, r.dir, want, func(p string) bool {
		p, _, _ = strings.Cut(p, "#")
		f, at, ok := strings.Cut(p, ":")
		n, err := strconv.ParseUint(at, 10, 64)
		return ok && err == nil && (f > file || f == file && n >= uint64(pos))
	})
	if code := stream.term(); code != 0 {
		t.Fatalf("streamer: exit %d\n%s", code, stream.out.String())
	}
	segs := r.names(t, r.dir, "binlog/")
	for _, s := range segs {
		if strings.Contains(s, "/seg/") {
			r.segment = s // the newest: after the base
		}
	}
	return r
}

func buildOplogRepo(t *testing.T) *streamRepo {
	t.Helper()
	f := testenv.NewFerretDB(t)
	ctx := context.Background()
	mc, err := f.Client(ctx)
	must(t, err)
	t.Cleanup(func() { mc.Disconnect(context.Background()) })
	coll := mc.Database("app").Collection("c")
	insert := func(from, to int) {
		t.Helper()
		var docs []any
		for i := from; i < to; i++ {
			docs = append(docs, bson.D{{Key: "_id", Value: i}, {Key: "v", Value: fmt.Sprintf("doc %d", i)}})
		}
		_, err := coll.InsertMany(ctx, docs)
		must(t, err)
	}
	r, c, stream := startStreamRepo(t, f.URL())
	insert(0, 200)
	c.expect(0, "backup", "--repo", r.dir, "--source", f.URL(), "--log-level", "warn")
	insert(200, 400)
	newest, ok, err := oplog.Newest(ctx, mc)
	if err != nil || !ok {
		t.Fatalf("newest oplog entry: %v", err)
	}
	waitStream(t, c, r.dir, newest.String(), func(p string) bool {
		ts, err := oplog.ParseTS(p)
		return err == nil && !ts.Less(newest)
	})
	if code := stream.term(); code != 0 {
		t.Fatalf("streamer: exit %d\n%s", code, stream.out.String())
	}
	for _, s := range r.names(t, r.dir, "oplog/") {
		if strings.Contains(s, "/seg/") {
			r.segment = s
		}
	}
	return r
}

// TestDamagedStreamSegments: a binlog or oplog segment after the base is
// damaged, truncated or deleted: verify names it, and a restore to the
// latest point refuses naming it rather than restoring less.
func TestDamagedStreamSegments(t *testing.T) {
	for _, engine := range []struct {
		name  string
		build func(*testing.T) *streamRepo
	}{{"binlog", buildBinlogRepo}, {"oplog", buildOplogRepo}} {
		t.Run(engine.name, func(t *testing.T) {
			r := engine.build(t)
			c := newCLI(t)
			if r.segment == "" {
				t.Fatal("no segment archived")
			}
			for _, how := range []string{"flip", "truncate", "delete"} {
				t.Run(how, func(t *testing.T) {
					repo := r.copyRepo(t)
					damage(t, repo, r.segment, how)
					verify := runOutcome(c, "verify", "--repo", repo, "--identity-file", r.key)
					if verify.code != 3 || !strings.Contains(verify.stdout, r.segment) {
						t.Fatalf("verify: %s", verify)
					}
					restore := runOutcome(c, "restore", "--repo", repo, "--identity-file", r.key, "--latest", "--target", r.target, "--force")
					if restore.code == 0 || !strings.Contains(restore.stderr, segmentRange(r.segment)) {
						t.Fatalf("restore through the %s segment %s: %s", how, r.segment, restore)
					}
				})
			}
		})
	}
}

// segmentRange is the <first>-<last> part of a segment's name, which
// messages about it carry.
func segmentRange(name string) string { return name[strings.LastIndexByte(name, '/')+1:] }
