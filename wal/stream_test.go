package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/supervise"
	"github.com/tidemark/tidemark/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Checkpoints would recycle pg_wal files we compare against; keep them away.
var pgConf = []string{"checkpoint_timeout=1h", "max_wal_size=4GB", "wal_keep_size=1GB", "wal_sender_timeout=60s"}

type fixture struct {
	t        *testing.T
	dir      string // the repository's directory
	identity *age.X25519Identity
	pg       *testenv.Postgres
	repo     *archive.Repository // can read (holds the identity)
	g        Geometry
}

func newFixture(t *testing.T, extraConf ...string) *fixture {
	t.Helper()
	pg := testenv.NewPostgreSQL(t, testenv.PostgresOptions{Conf: append(append([]string{}, pgConf...), extraConf...)})
	r := testenv.NewRepo(t)
	return &fixture{t: t, dir: r.Dir, identity: r.Identity, pg: pg, repo: r.Repository, g: Geometry{SegSize: 16 << 20}}
}

func (f *fixture) config() Config {
	return Config{Repo: f.repo, Source: f.pg.URL("postgres"), Slot: "tidemark", CreateSlot: true,
		FlushInterval: 200 * time.Millisecond, Log: slog.New(slog.NewTextHandler(testWriter{f.t}, nil))}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

// stream runs Stream in the background; stop cancels it and returns its error.
func (f *fixture) stream(cfg Config) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Stream(ctx, cfg) }()
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
}

func (f *fixture) conn() *pgx.Conn {
	f.t.Helper()
	c, err := pgx.Connect(context.Background(), f.pg.URL("postgres"))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// load writes about mb MiB of WAL.
func (f *fixture) load(c *pgx.Conn, mb int) {
	f.t.Helper()
	ctx := context.Background()
	if _, err := c.Exec(ctx, "CREATE TABLE IF NOT EXISTS load (id serial, pad text)"); err != nil {
		f.t.Fatal(err)
	}
	rows := mb * 4000 // ~260 bytes of WAL a row
	if _, err := c.Exec(ctx, "INSERT INTO load (pad) SELECT repeat(md5(g::text), 6) FROM generate_series(1, $1) g", rows); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) currentLSN(c *pgx.Conn) LSN {
	f.t.Helper()
	var s string
	if err := c.QueryRow(context.Background(), "SELECT pg_current_wal_flush_lsn()::text").Scan(&s); err != nil {
		f.t.Fatal(err)
	}
	lsn, err := parseLSN(s)
	if err != nil {
		f.t.Fatal(err)
	}
	return lsn
}

func (f *fixture) state() *State {
	f.t.Helper()
	st, err := LoadState(context.Background(), f.repo.Store(), f.g)
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

// waitArchived waits until the archive's end reaches lsn (a deadline, not a
// performance threshold: it only keeps a broken streamer from hanging).
func (f *fixture) waitArchived(lsn LSN) {
	f.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if tl := f.state().Latest(); tl != nil && tl.End >= lsn {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.t.Fatalf("archive did not reach %s; state end %v\n%s", lsn, f.state().Latest(), f.pg.Log())
}

// checkAgainstServer compares every archived segment with the server's own
// pg_wal file: complete segments byte for byte, the partial one up to what
// was archived.
func (f *fixture) checkAgainstServer() (complete int) {
	f.t.Helper()
	st := f.state()
	tl := st.Latest()
	if tl == nil {
		f.t.Fatal("nothing archived")
	}
	if len(tl.Gaps) > 0 {
		f.t.Fatalf("gaps in the archive: %v", tl.Gaps)
	}
	for segno := f.g.SegNo(tl.Start); f.g.SegStart(segno) < tl.End; segno++ {
		name := f.g.FileName(tl.TLI, segno)
		var got bytes.Buffer
		if err := Fetch(context.Background(), f.repo, f.g, name, &got); err != nil {
			f.t.Fatalf("fetch %s: %v", name, err)
		}
		want, err := os.ReadFile(filepath.Join(f.pg.DataDir, "pg_wal", name))
		if err != nil {
			f.t.Fatalf("server file %s: %v", name, err)
		}
		n := uint64(len(want))
		if end := uint64(tl.End - f.g.SegStart(segno)); end < n {
			n = end // the segment still filling: compare what was archived
		} else {
			complete++
		}
		if !bytes.Equal(got.Bytes()[:n], want[:n]) {
			f.t.Fatalf("segment %s differs from the server's file within the first %d bytes", name, n)
		}
		if uint64(got.Len()) != f.g.SegSize {
			f.t.Fatalf("segment %s fetched as %d bytes", name, got.Len())
		}
	}
	return complete
}

func (f *fixture) slotRestartLSN(c *pgx.Conn) LSN {
	f.t.Helper()
	var s string
	if err := c.QueryRow(context.Background(), "SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = 'tidemark'").Scan(&s); err != nil {
		f.t.Fatal(err)
	}
	lsn, _ := parseLSN(s)
	return lsn
}

func TestArchivedSegmentsMatchServer(t *testing.T) {
	f := newFixture(t)
	c := f.conn()
	stop := f.stream(f.config())
	f.load(c, 40)
	target := f.currentLSN(c)
	f.waitArchived(target)
	// The slot never runs ahead of the archive.
	if slot, end := f.slotRestartLSN(c), f.state().Latest().End; slot > end {
		t.Fatalf("slot restart_lsn %s is ahead of the archive's end %s", slot, end)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := f.checkAgainstServer(); n < 2 {
		t.Fatalf("only %d complete segments archived", n)
	}
	// Parts of completed segments were consolidated away.
	st := f.state().Latest()
	if st.Partial > 1 {
		t.Fatalf("%d partial segments remain, want at most the newest", st.Partial)
	}
}

func TestResumeAfterServerRestart(t *testing.T) {
	f := newFixture(t)
	c := f.conn()
	stop := f.stream(f.config())
	f.load(c, 20)
	f.waitArchived(f.currentLSN(c))
	c.Close(context.Background())

	f.pg.Stop()
	if err := f.pg.Start(); err != nil {
		t.Fatal(err)
	}
	c = f.conn()
	f.load(c, 20)
	f.waitArchived(f.currentLSN(c))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	f.checkAgainstServer()
}

func TestResumeAfterStreamerStop(t *testing.T) {
	f := newFixture(t)
	c := f.conn()
	stop := f.stream(f.config())
	f.load(c, 10)
	f.waitArchived(f.currentLSN(c))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// WAL written while no streamer runs is held by the slot and archived
	// when streaming resumes: no gap.
	f.load(c, 30)
	stop = f.stream(f.config())
	f.waitArchived(f.currentLSN(c))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	f.checkAgainstServer()
}

func TestSynchronousCommitWaitsForArchive(t *testing.T) {
	f := newFixture(t, "synchronous_standby_names=tidemark")
	ctx := context.Background()
	// Create the slot and the table while a streamer runs, then stop it.
	stop := f.stream(f.config())
	c := f.conn()
	if _, err := c.Exec(ctx, "CREATE TABLE sync_probe (x int)"); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	c = f.conn()
	// No streamer: a commit cannot complete.
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := c.Exec(tctx, "INSERT INTO sync_probe VALUES (-1)")
	cancel()
	if err == nil {
		t.Fatal("commit returned while no synchronous standby was connected")
	}
	c = f.conn()
	cfg := f.config()
	cfg.Synchronous = true
	stop = f.stream(cfg)
	defer stop()
	var before string
	if err := c.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&before); err != nil {
		t.Fatal(err)
	}
	// With the streamer: commits proceed, and each is archived when it returns.
	for i := 0; i < 5; i++ {
		tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		if _, err := c.Exec(tctx, "INSERT INTO sync_probe VALUES ($1)", i); err != nil {
			cancel()
			t.Fatalf("commit %d with a synchronous streamer: %v", i, err)
		}
		cancel()
		var after string
		if err := c.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&after); err != nil {
			t.Fatal(err)
		}
		lsn, _ := parseLSN(before)
		if end := f.state().Latest().End; end <= lsn {
			t.Fatalf("commit %d returned before its WAL was archived (archive end %s, commit after %s)", i, end, lsn)
		}
		before = after
	}
}

func TestRefusesForeignCluster(t *testing.T) {
	f := newFixture(t)
	stop := f.stream(f.config())
	f.waitArchived(0)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	other := testenv.NewPostgreSQL(t, testenv.PostgresOptions{Conf: pgConf})
	cfg := f.config()
	cfg.Source = other.URL("postgres")
	if err := Stream(context.Background(), cfg); !errors.Is(err, archive.ErrSourceMismatch) {
		t.Fatalf("streaming another cluster into the repository: %v", err)
	}
}

func TestMissingSlotRefused(t *testing.T) {
	f := newFixture(t)
	cfg := f.config()
	cfg.CreateSlot = false
	if err := Stream(context.Background(), cfg); !errors.Is(err, ErrNoSlot) {
		t.Fatalf("stream without slot: %v", err)
	}
}

// TestStreamSignals: the loop shared by the streamers ends streaming on
// what wal cannot retry its way out of, and follows a new timeline at once.
func TestStreamSignals(t *testing.T) {
	for _, err := range []error{errPermanent, ErrNoSlot, ErrGap} {
		if !supervise.Permanent(fmt.Errorf("session: %w", err)) {
			t.Errorf("%v is retried", err)
		}
	}
	if !errors.Is(errTimelineSwitch, supervise.ErrAgain) {
		t.Error("a timeline switch waits for a backoff")
	}
}

func TestGapWhenSlotDroppedAndWALRemoved(t *testing.T) {
	f := newFixture(t)
	c := f.conn()
	stop := f.stream(f.config())
	f.load(c, 5)
	f.waitArchived(f.currentLSN(c))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Someone drops the slot; the server moves on and recycles WAL. The
	// walsender may outlive the client's disconnect by a moment, keeping
	// the slot active: wait for it to let go.
	ctx := context.Background()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var active bool
		if err := c.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = 'tidemark'").Scan(&active); err != nil {
			t.Fatal(err)
		}
		if !active {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot stayed active after the streamer stopped")
		}
	}
	if _, err := c.Exec(ctx, "SELECT pg_drop_replication_slot('tidemark')"); err != nil {
		t.Fatal(err)
	}
	f.load(c, 40)
	for i := 0; i < 3; i++ {
		if _, err := c.Exec(ctx, "SELECT pg_switch_wal(); CHECKPOINT"); err != nil {
			t.Fatal(err)
		}
		f.load(c, 1)
	}
	cfg := f.config()
	var logged bytes.Buffer
	cfg.Log = slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{t}, &logged), nil))
	err := Stream(ctx, cfg) // recreates the slot, now far ahead
	if !errors.Is(err, ErrGap) {
		t.Fatalf("stream after the slot was dropped: %v", err)
	}
	// The engine's gap is the shared class, so the CLI exits 6 for it as
	// for every engine's gap.
	if !errors.Is(err, archive.ErrGap) {
		t.Fatalf("a WAL gap does not match archive.ErrGap: %v", err)
	}
	// Logged naming the stream and the database.
	want := fmt.Sprintf("source=postgres://%s@%s:%d/postgres", f.pg.User, f.pg.Host, f.pg.Port)
	if l := logged.String(); !strings.Contains(l, "gap in the WAL archive: streaming stops") || !strings.Contains(l, want) {
		t.Fatalf("gap not logged with %q:\n%s", want, l)
	}
	// The gap is recorded for status, from where the archive stopped.
	gaps, err := f.repo.Gaps(ctx)
	if err != nil || len(gaps) != 1 || gaps[0].Engine != "postgres" || !strings.Contains(gaps[0].From, "timeline 1") {
		t.Fatalf("recorded gaps: %+v, %v", gaps, err)
	}
}

func tidemarkBinary(t *testing.T) string { return testenv.TidemarkBinary(t) }

func (f *fixture) startBinary(args ...string) *exec.Cmd {
	f.t.Helper()
	cmd := exec.Command(tidemarkBinary(f.t), append([]string{"stream", "--repo", f.dir, "--source", f.pg.URL("postgres"),
		"--slot", "tidemark", "--create-slot", "--flush-interval", "200ms"}, args...)...)
	cmd.Stdout, cmd.Stderr = testWriter{f.t}, testWriter{f.t}
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	return cmd
}

// TestKillNineAndResume: a streamer killed mid-load loses nothing (the slot
// held what was not durable), and SIGTERM stops it cleanly with exit 0.
func TestKillNineAndResume(t *testing.T) {
	f := newFixture(t)
	c := f.conn()
	cmd := f.startBinary()
	f.load(c, 20)
	f.waitArchived(f.currentLSN(c) - 1<<20) // mid-load: some of it archived
	f.load(c, 5)
	cmd.Process.Kill() // kill -9
	cmd.Wait()
	f.load(c, 20) // while nothing streams

	cmd = f.startBinary()
	f.waitArchived(f.currentLSN(c))
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("streamer after SIGTERM: %v", err)
	}
	if n := f.checkAgainstServer(); n < 3 {
		t.Fatalf("only %d complete segments", n)
	}
}

// TestFollowsNewTimelineAfterPromotion: a copy of the cluster, started as a
// standby whose restore_command is `tidemark wal-fetch`, is promoted; the
// streamer follows it onto timeline 2 in the same repository, archiving the
// history file and the new timeline's segments.
func TestFollowsNewTimelineAfterPromotion(t *testing.T) {
	t.Run("archive at the switch point", func(t *testing.T) { testPromotion(t, false) })
	// The streamer stopped before the primary's last WAL: the old timeline
	// must first be finished from the promoted server, which ends the COPY at
	// the switch point, before timeline 2 starts.
	t.Run("archive behind the switch point", func(t *testing.T) { testPromotion(t, true) })
}

func testPromotion(t *testing.T, lagging bool) {
	f := newFixture(t)
	c := f.conn()
	stop := f.stream(f.config())
	f.load(c, 20)
	f.waitArchived(f.currentLSN(c))
	if lagging {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		f.load(c, 10) // WAL on timeline 1 that is not archived yet
	}
	primaryEnd := f.currentLSN(c)
	c.Close(context.Background())
	f.pg.Stop() // clean shutdown: a connected streamer receives everything first
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	end1 := f.state().Latest().End
	if lagging && end1 >= primaryEnd {
		t.Fatalf("setup: the archive (%s) should lag the primary (%s)", end1, primaryEnd)
	}

	// The copy, as a standby recovering from the repository.
	copyDir := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("cp", "-a", f.pg.DataDir, copyDir).CombinedOutput(); err != nil {
		t.Fatalf("copy data dir: %v %s", err, out)
	}
	keyFile := filepath.Join(filepath.Dir(copyDir), "restore.key")
	if err := os.WriteFile(keyFile, []byte(f.identity.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(copyDir, "standby.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f.pg.Grant(t, copyDir, keyFile, f.dir)
	restoreCmd := fmt.Sprintf("restore_command=%s wal-fetch --repo %s --identity-file %s %%f %%p", tidemarkBinary(t), f.dir, keyFile)
	cp := testenv.NewPostgreSQL(t, testenv.PostgresOptions{DataDir: copyDir, Conf: append(append([]string{}, pgConf...), restoreCmd)})
	cc, err := pgx.Connect(context.Background(), cp.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close(context.Background())
	ctx := context.Background()
	var promoted bool
	if err := cc.QueryRow(ctx, "SELECT pg_promote(true, 60)").Scan(&promoted); err != nil || !promoted {
		t.Fatalf("promote: %v %v\n%s", promoted, err, cp.Log())
	}
	f.pg = cp // from here on the fixture compares against the copy
	f.load(cc, 20)

	cfg := f.config()
	cfg.Source = cp.URL("postgres")
	stop = f.stream(cfg)
	f.waitArchived(f.currentLSN(cc))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st := f.state()
	if len(st.Timelines) != 2 || st.Latest().TLI != 2 {
		t.Fatalf("timelines archived: %+v", st.Timelines)
	}
	switch {
	case !lagging && st.Timelines[0].End != end1:
		t.Fatalf("timeline 1 changed: end %s, was %s", st.Timelines[0].End, end1)
	case lagging && st.Timelines[0].End < primaryEnd:
		t.Fatalf("timeline 1 not finished: archive ends at %s, the primary wrote up to %s", st.Timelines[0].End, primaryEnd)
	}
	if len(st.Timelines[0].Gaps) > 0 || len(st.Timelines[1].Gaps) > 0 {
		t.Fatalf("gaps: %v %v", st.Timelines[0].Gaps, st.Timelines[1].Gaps)
	}
	var hist bytes.Buffer
	if err := Fetch(ctx, f.repo, f.g, "00000002.history", &hist); err != nil {
		t.Fatalf("history file not archived: %v", err)
	}
	if !bytes.HasPrefix(hist.Bytes(), []byte("1\t")) {
		t.Fatalf("history file: %q", hist.String())
	}
	f.checkAgainstServer()
}
