package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tidemark/tidemark/internal/jobs"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/restore"
)

// agentRun is an agent running in-process for a test.
type agentRun struct {
	t      *testing.T
	listen string
	logs   testenv.LockedBuffer
	stop   context.CancelFunc
	done   chan int
}

func startAgent(t *testing.T, config, listen string) *agentRun {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	ar := &agentRun{t: t, listen: listen, stop: stop, done: make(chan int, 1)}
	t.Cleanup(stop)
	go func() {
		a := newApp(io.Discard, &ar.logs)
		root := a.root()
		root.SetArgs([]string{"agent", "--config", config, "--log-format", "json"})
		err := root.ExecuteContext(ctx)
		printError(&ar.logs, err)
		ar.done <- exitCode(err)
	}()
	return ar
}

func (ar *agentRun) fail(format string, args ...any) {
	ar.t.Helper()
	ar.t.Fatalf(format+"\nagent log:\n%s", append(args, ar.logs.String())...)
}

// get fetches a path from the agent's HTTP listener.
func (ar *agentRun) get(path string) string {
	ar.t.Helper()
	resp, err := http.Get("http://" + ar.listen + path)
	if err != nil {
		ar.fail("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metric scrapes one series from /metrics; -1 when absent.
func (ar *agentRun) metric(name string) float64 {
	resp, err := http.Get("http://" + ar.listen + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func (ar *agentRun) waitFor(what string, cond func() bool) {
	ar.t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); !cond(); time.Sleep(100 * time.Millisecond) {
		select {
		case code := <-ar.done:
			ar.fail("agent exited %d while waiting for %s", code, what)
		default:
		}
		if time.Now().After(deadline) {
			ar.fail("timed out waiting for %s", what)
		}
	}
}

// shutdown stops the agent as SIGTERM would and expects a clean exit.
func (ar *agentRun) shutdown() {
	ar.t.Helper()
	ar.stop()
	if code := <-ar.done; code != 0 {
		ar.fail("agent exit %d on shutdown", code)
	}
}

// statusOf reads `status --json`.
func statusOf(t *testing.T, repo string) jobs.StatusReport {
	t.Helper()
	out, _ := expect(t, 0, "status", "--repo", repo, "--json")
	var st jobs.StatusReport
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

func agentListen(t *testing.T) string {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// TestAgentPostgres runs the agent in-process against a real PostgreSQL:
// it streams and takes scheduled backups and verifies; a killed stream is
// restarted (and alerted); metrics show it all; a second agent on the
// repository is refused; a reloaded config with a retention policy leaves
// exactly the backups it keeps, and the oldest kept one still restores.
func TestAgentPostgres(t *testing.T) {
	ctx := context.Background()
	pg := testenv.NewPostgreSQL(t, testenv.PostgresOptions{})
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	key, id := keyFile(t)
	expect(t, 0, "init", "--repo", repo, "--recipient", id.Recipient().String())

	var hookMu sync.Mutex
	var hooked []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Text string }
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &body)
		hookMu.Lock()
		hooked = append(hooked, body.Text)
		hookMu.Unlock()
	}))
	defer hook.Close()
	hookFile := filepath.Join(dir, "webhook")
	os.WriteFile(hookFile, []byte(hook.URL+"\n"), 0o600)
	listen := agentListen(t)
	config := filepath.Join(dir, "tidemark.yaml")
	writeConfig := func(jobs string) {
		t.Helper()
		cfg := fmt.Sprintf(`listen: %s
alerts:
  webhook_url_file: %s
databases:
  - name: main
    source: %s
    repo: %s
    identity_file: %s
    stream:
      enabled: true
      create_slot: true
      flush_interval: 200ms
%s`, listen, hookFile, pg.URL("postgres"), repo, key, jobs)
		if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(`    backup:
      schedule: "@every 2s"
      fast_checkpoint: true
    verify:
      schedule: "@every 3s"
`)

	ar := startAgent(t, config, listen)
	metric, waitFor, fail := ar.metric, ar.waitFor, ar.fail
	backups := func() []string {
		var ids []string
		for _, b := range statusOf(t, repo).Backups {
			ids = append(ids, b.ID)
		}
		return ids
	}

	waitFor("the stream", func() bool { return metric(`tidemark_stream_up{database="main"}`) == 1 })
	c, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	c.Exec(ctx, "CREATE TABLE t AS SELECT g FROM generate_series(1, 2000) g")

	waitFor("three scheduled backups and a verify", func() bool {
		return len(backups()) >= 3 && metric(`tidemark_job_last_success{database="main",job="verify"}`) == 1
	})
	// The page at / pictures the same repository: a mark per backup, the
	// recoverable window, the RPO.
	if page := ar.get("/"); strings.Count(page, `class="backup"`) < 3 || !strings.Contains(page, `class="window"`) || !strings.Contains(page, "RPO now") {
		fail("page at /:\n%s", page)
	}
	if v := metric(`tidemark_job_last_success{database="main",job="backup"}`); v != 1 {
		fail("backup job_last_success = %v", v)
	}
	if ts := metric(`tidemark_last_backup_success_timestamp_seconds{database="main"}`); ts < float64(time.Now().Add(-time.Minute).Unix()) {
		fail("last backup timestamp %v is not recent", ts)
	}
	// Three backups of one unchanged cluster store its chunks once: at
	// least 3× from deduplication alone (the archived WAL is not counted).
	if r := metric(`tidemark_dedup_ratio{database="main"}`); r < 3 {
		fail("dedup ratio %v after three backups of one cluster, want >= 3", r)
	}
	if r := metric(`tidemark_last_backup_compression_ratio{database="main"}`); r <= 1 {
		fail("compression ratio of the newest backup %v, want > 1 (a cluster compresses)", r)
	}
	if b := statusOf(t, repo).Backups[0]; b.NewPlain <= b.NewStored {
		fail("status: the first backup's new chunks %d bytes plain, %d stored", b.NewPlain, b.NewStored)
	}

	// One agent per repository.
	if _, errs := expect(t, exitLocked, "agent", "--config", config); !strings.Contains(errs, "tidemark agent for main") {
		t.Fatalf("second agent: %s", errs)
	}

	// A stream killed on the server comes back on its own and archives
	// what was written meanwhile. (The supervisor's own restarts, for a
	// stream that gives up, are covered in the agent package.)
	var killed int
	if err := c.QueryRow(ctx, "SELECT pg_terminate_backend(pid)::int * pid FROM pg_stat_replication WHERE state = 'streaming'").Scan(&killed); err != nil || killed == 0 {
		t.Fatalf("terminate the walsender: %v", err)
	}
	c.Exec(ctx, "INSERT INTO t SELECT g FROM generate_series(2001, 3000) g")
	var written string
	c.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&written)
	waitFor("the stream to come back and archive past "+written, func() bool {
		var ok bool
		c.QueryRow(ctx, "SELECT bool_or(flush_lsn >= $1::pg_lsn) FROM pg_stat_replication WHERE state = 'streaming' AND pid <> $2",
			written, killed).Scan(&ok)
		return ok && metric(`tidemark_stream_up{database="main"}`) == 1
	})

	// Reload with retention only: keep the newest two backups.
	writeConfig(`    retention:
      schedule: "@every 1s"
      keep_last: 2
`)
	before := backups()
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor("retention to keep two backups", func() bool {
		return len(backups()) == 2 && metric(`tidemark_job_last_success{database="main",job="expire"}`) == 1
	})
	kept := backups()
	// Exactly the newest two: nothing newer than the older kept one was
	// deleted, and further runs delete nothing more.
	for _, b := range before {
		if b > kept[0] && !contains(kept, b) {
			t.Fatalf("retention deleted %s, newer than the kept %v", b, kept)
		}
	}
	time.Sleep(2 * time.Second)
	if again := backups(); strings.Join(again, ",") != strings.Join(kept, ",") {
		t.Fatalf("retention kept %v, then %v", kept, again)
	}

	ar.shutdown()

	// The oldest kept backup still restores (planner and WAL coverage
	// checked, every file verified against its manifest).
	st := statusOf(t, repo)
	if len(st.Backups) != 2 || st.LastVerify == nil || !st.LastVerify.OK || len(st.Streams) != 1 || st.Streams[0].Earliest == nil {
		t.Fatalf("status after the agent: %+v\nlast verify: %+v\nagent log:\n%s", st, st.LastVerify, ar.logs.String())
	}
	oldest := st.Backups[0].Finished.Add(time.Second).UTC().Format(time.RFC3339Nano)
	pg.Grant(t, repo) // the restored server's OS user reads the repository through restore_command
	expect(t, 0, "restore", "--repo", repo, "--identity-file", key, "--to-time", oldest,
		"--target-dir", filepath.Join(dir, "restored"))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// agentWithBackups inits a repository, starts an agent that streams name's
// source (extra: more config lines for it) with backups every 2 s and
// verifies every 3 s, and waits until two backups and a verify are done.
func agentWithBackups(t *testing.T, name, source, extra string) (ar *agentRun, repo, key string) {
	t.Helper()
	dir := t.TempDir()
	repo = filepath.Join(dir, "repo")
	key, id := keyFile(t)
	expect(t, 0, "init", "--repo", repo, "--recipient", id.Recipient().String())
	listen := agentListen(t)
	config := filepath.Join(dir, "tidemark.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf(`listen: %s
alerts:
  lag_threshold: 1m
databases:
  - name: %s
    source: %s
    repo: %s
    identity_file: %s
    stream: {enabled: true, flush_interval: 200ms}
    backup: {schedule: "@every 2s", jobs: 2}
    verify: {schedule: "@every 3s"}
%s`, listen, name, source, repo, key, extra)), 0o600)
	ar = startAgent(t, config, listen)
	ar.waitFor("two backups, the stream and a verify", func() bool {
		return ar.metric(`tidemark_stream_up{database="`+name+`"}`) == 1 && len(statusOf(t, repo).Backups) >= 2 &&
			ar.metric(`tidemark_job_last_success{database="`+name+`",job="verify"}`) == 1
	})
	return ar, repo, key
}

// waitSmallRPO waits for the agent's RPO of name to come under 30 s (it
// would read as the age of the archive's newest change, or not at all, if
// the stream's progress did not reach the agent).
func (ar *agentRun) waitSmallRPO(name string) {
	ar.t.Helper()
	ar.waitFor("a small RPO", func() bool {
		rpo := ar.metric(`tidemark_stream_rpo_seconds{database="` + name + `"}`)
		return rpo >= 0 && rpo < 30
	})
}

// checkLiveStatus: while the agent streams, status calls its streamer
// alive or idle, and its RPO agrees with the agent's gauge within a
// heartbeat interval (status reads the streamer's last heartbeat).
func (ar *agentRun) checkLiveStatus(name, repo string) {
	ar.t.Helper()
	st := statusOf(ar.t, repo)
	agentRPO := ar.metric(`tidemark_stream_rpo_seconds{database="` + name + `"}`)
	if len(st.Streamers) != 1 || st.Streamers[0].Health == jobs.HealthDown || len(st.Streams) != 1 || st.Streams[0].CaughtUp == nil ||
		math.Abs(st.Streams[0].RPOSec-agentRPO) > jobs.HeartbeatInterval.Seconds()+5 {
		ar.fail("status while the agent streams (agent's RPO %.1fs): %+v\n%+v", agentRPO, st.Streamers, st.Streams)
	}
}

// checkWindow: one recoverable window with both ends and no gap, and a
// stored verify report that passed.
func checkWindow(t *testing.T, st jobs.StatusReport) {
	t.Helper()
	if len(st.Streams) != 1 || st.Streams[0].Earliest == nil || st.Streams[0].Latest == nil ||
		len(st.Streams[0].Gaps) != 0 || st.LastVerify == nil || !st.LastVerify.OK {
		t.Fatalf("status after the agent: %+v", st)
	}
}

// TestAgentMySQL: the agent streams a MariaDB binlog and takes scheduled
// backups; the RPO it reports stays small while the stream keeps up,
// status shows a recoverable window over the binlog, and a drill restores
// it into a scratch MariaDB.
func TestAgentMySQL(t *testing.T) {
	src := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	src.Exec(t, "CREATE DATABASE shop")
	src.Exec(t, "CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(20))")
	src.Exec(t, "INSERT INTO shop.t VALUES (1, 'a'), (2, 'b')")
	pw := filepath.Join(t.TempDir(), "password")
	os.WriteFile(pw, []byte(src.Password+"\n"), 0o600)
	ar, repo, key := agentWithBackups(t, "shop", src.URL(), "    password_file: "+pw+"\n")
	src.Exec(t, "INSERT INTO shop.t VALUES (3, 'c')")
	ar.waitSmallRPO("shop")
	ar.checkLiveStatus("shop", repo)
	ar.shutdown()
	st := statusOf(t, repo)
	checkWindow(t, st)
	if st.Streams[0].Engine != "mysql" || !strings.HasPrefix(st.Streams[0].Stream, "binlog/") {
		t.Fatalf("status binlog: %+v", st.Streams)
	}
	// A drill restores everything into a scratch MariaDB and checks it.
	out, _ := expect(t, 0, "drill", "--repo", repo, "--identity-file", key, "--json")
	var rep restore.DrillReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.OK || rep.Engine != "mysql" || rep.Tables != 1 || rep.Rows != 3 {
		t.Fatalf("drill: %v\n%s", err, out)
	}
	// The RTO counts the scratch server's start, as a restore onto a
	// fresh host would pay it.
	if rep.ServerStartSeconds <= 0 || rep.RTOSeconds < rep.ServerStartSeconds+rep.RestoreSeconds+rep.RecoverySeconds {
		t.Fatalf("drill RTO %.2fs, server start %.2fs, restore %.2fs, replay %.2fs", rep.RTOSeconds, rep.ServerStartSeconds, rep.RestoreSeconds, rep.RecoverySeconds)
	}
	if st := statusOf(t, repo); st.LastDrill == nil || st.LastDrill.Rows != 3 {
		t.Fatalf("status after the drill: %+v", st.LastDrill)
	}
}

// TestAgentMongo: the agent tails a FerretDB oplog and takes scheduled
// backups; the RPO stays small while the stream keeps up, and status shows
// a recoverable window over the oplog.
func TestAgentMongo(t *testing.T) {
	ctx := context.Background()
	src := testenv.NewFerretDB(t)
	c, err := src.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(ctx)
	coll := c.Database("app").Collection("items")
	for i := range 3 {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	ar, repo, key := agentWithBackups(t, "app", src.URL(), "")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 3}}); err != nil {
		t.Fatal(err)
	}
	ar.waitSmallRPO("app")
	ar.checkLiveStatus("app", repo)
	ar.shutdown()
	st := statusOf(t, repo)
	checkWindow(t, st)
	if st.Streams[0].Engine != "mongodb" || !strings.HasPrefix(st.Streams[0].Stream, "oplog") {
		t.Fatalf("status shows no oplog: %+v", st.Streams)
	}
	// A drill restores into a scratch server, reads everything back, finds
	// the indexes, and empties the server again: a second drill runs too.
	scratch := testenv.NewFerretDB(t)
	for range 2 {
		out, _ := expect(t, 0, "drill", "--repo", repo, "--identity-file", key, "--target", scratch.URL(), "--json")
		var rep restore.DrillReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.OK || rep.Engine != "mongodb" || rep.Tables != 1 ||
			rep.Rows != 4 || rep.IndexesChecked < 1 {
			t.Fatalf("drill: %v\n%s", err, out)
		}
	}
	if st := statusOf(t, repo); st.LastDrill == nil || st.LastDrill.Rows != 4 {
		t.Fatalf("status after the drill: %+v", st.LastDrill)
	}
	// A scratch server holding data is refused before anything is written.
	if _, err := coll.Database().Client().Database("other").Collection("x").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, errs := expect(t, exitTargetHoldsData, "drill", "--repo", repo, "--identity-file", key, "--target", src.URL()); !strings.Contains(errs, "empty server") {
		t.Fatalf("drill into a server with data: %s", errs)
	}
}
