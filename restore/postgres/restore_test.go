package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/all"
	pgbackup "github.com/tidemark/tidemark/basebackup/postgres"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/storeenv"
	"github.com/tidemark/tidemark/restore"
	"github.com/tidemark/tidemark/wal"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type pitr struct {
	t        *testing.T
	pg       *testenv.Postgres
	repoDir  string // the file repository's directory, when on disk
	repoURL  string // where the repository lives: repoDir or an object store URL
	keyFile  string
	repo     *archive.Repository
	stopWAL  func()
	conn     *pgx.Conn
	identity *age.X25519Identity
}

func newPITR(t *testing.T) *pitr { t.Helper(); return newPITRAt(t, "") }

// newPITRAt is newPITR with the repository at repoURL ("" = a local directory).
func newPITRAt(t *testing.T, repoURL string) *pitr { t.Helper(); return newPITRWith(t, repoURL, 0) }

// newPITRWith is newPITRAt on a server of a given major (0: the default).
func newPITRWith(t *testing.T, repoURL string, major int, conf ...string) *pitr {
	t.Helper()
	pg := testenv.NewPostgreSQL(t, testenv.PostgresOptions{Major: major,
		Conf: append([]string{"checkpoint_timeout=1h", "max_wal_size=2GB"}, conf...)})
	id, _ := age.GenerateX25519Identity()
	base := t.TempDir()
	p := &pitr{t: t, pg: pg, repoDir: filepath.Join(base, "repo"), keyFile: filepath.Join(base, "restore.key"), identity: id}
	if p.repoURL = repoURL; repoURL == "" {
		p.repoURL = p.repoDir
	}
	if err := os.WriteFile(p.keyFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := all.Open(ctx, p.repoURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Init(ctx, s, archive.InitOptions{Recipients: []string{id.Recipient().String()}}); err != nil {
		t.Fatal(err)
	}
	if p.repo, err = archive.Open(ctx, s, archive.Keys{Identities: []age.Identity{id}}); err != nil {
		t.Fatal(err)
	}
	if p.conn, err = pgx.Connect(ctx, pg.URL("postgres")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.conn.Close(context.Background()) })
	return p
}

func (p *pitr) log() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func (p *pitr) startStreaming() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- wal.Stream(ctx, wal.Config{Repo: p.repo, Source: p.pg.URL("postgres"), Slot: "tidemark", CreateSlot: true,
			FlushInterval: 100 * time.Millisecond, Log: p.log()})
	}()
	var once sync.Once
	p.stopWAL = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				p.t.Errorf("streamer: %v", err)
			}
		})
	}
	p.t.Cleanup(func() { p.stopWAL() })
	// Wait until it holds the slot, so a backup finds it running (its
	// walsender shows in pg_stat_replication before START_REPLICATION
	// makes the slot active: a backup then archived its WAL itself).
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		var n int
		p.conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'tidemark' AND active").Scan(&n)
		if n == 1 {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatal("streamer never connected")
		}
	}
}

func (p *pitr) exec(sql string, args ...any) {
	p.t.Helper()
	if _, err := p.conn.Exec(context.Background(), sql, args...); err != nil {
		p.t.Fatalf("%s: %v", sql, err)
	}
}

func (p *pitr) lsn() string {
	var s string
	if err := p.conn.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
		p.t.Fatal(err)
	}
	return s
}

// waitArchived waits (bounded, so a broken streamer fails instead of hanging)
// until the archive reaches the server's current position.
func (p *pitr) waitArchived() {
	p.t.Helper()
	target := mustLSN(p.lsn())
	g := wal.Geometry{SegSize: 16 << 20}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		st, err := wal.LoadState(context.Background(), p.repo.Store(), g)
		if err == nil && st.Latest() != nil && st.Latest().End >= target {
			return
		}
	}
	p.t.Fatalf("archive did not reach %s", target)
}

func (p *pitr) backup() *pgbackup.Result {
	p.t.Helper()
	s, err := all.Open(context.Background(), p.repoURL)
	if err != nil {
		p.t.Fatal(err)
	}
	w, err := archive.Open(context.Background(), s, archive.Keys{}) // a backup host: public key only
	if err != nil {
		p.t.Fatal(err)
	}
	res, err := pgbackup.Backup(context.Background(), pgbackup.Config{Repo: w, Source: p.pg.URL("postgres"),
		Slot: "tidemark", Type: "full", FastCheckpoint: true, Jobs: 4, Log: p.log()})
	if err != nil {
		p.t.Fatal(err)
	}
	return res
}

// restore restores to target, starts the result, waits for promotion and
// returns a connection to it.
func (p *pitr) restore(target Target) *pgx.Conn { return p.restoreWith(target, nil) }

func (p *pitr) restoreWith(target Target, tsMap map[string]string) *pgx.Conn {
	p.t.Helper()
	_, c := p.restoreServer(target, tsMap)
	return c
}

// restoreServer is restoreWith that also returns the restored server.
func (p *pitr) restoreServer(target Target, tsMap map[string]string) (*testenv.Postgres, *pgx.Conn) {
	p.t.Helper()
	dir := filepath.Join(p.t.TempDir(), "restored")
	cmd := fmt.Sprintf("%s wal-fetch --repo %s --identity-file %s %%f %%p", testenv.TidemarkBinary(p.t), p.repoURL, p.keyFile)
	_, err := Restore(context.Background(), Config{Repo: p.repo, TargetDir: dir, Target: target, Jobs: 4,
		RestoreCommand: cmd, Log: p.log(), TablespaceMap: tsMap})
	if err != nil {
		p.t.Fatal(err)
	}
	// The restored directory holds PostgreSQL's own backup_manifest: check
	// every file against it with PostgreSQL's tool (a relocated tablespace
	// rewrites tablespace_map, as it must).
	verify := []string{"-n", dir}
	if len(tsMap) > 0 {
		verify = append(verify, "-i", "tablespace_map")
	}
	// Only Debian's 15 ships client tools; its pg_verifybackup reads the
	// manifests of 13 to 16 (17 made the manifest version 2).
	if p.pg.Major <= 16 {
		if out, err := exec.Command(filepath.Join(testenv.PostgresBinDir, "pg_verifybackup"), verify...).CombinedOutput(); err != nil {
			p.t.Fatalf("pg_verifybackup: %v\n%s", err, out)
		}
	}
	p.pg.Grant(p.t, p.keyFile)
	if p.repoURL == p.repoDir {
		p.pg.Grant(p.t, p.repoDir)
	}
	for _, loc := range tsMap {
		p.pg.Grant(p.t, loc)
	}
	r := testenv.NewPostgreSQL(p.t, testenv.PostgresOptions{DataDir: dir})
	p.t.Cleanup(func() {
		if p.t.Failed() {
			p.t.Logf("restored server's log (%s):\n%s", target, r.Log())
		}
	})
	ctx := context.Background()
	c, err := pgx.Connect(ctx, r.URL("postgres"))
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { c.Close(ctx) })
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		var rec bool
		if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			p.t.Fatal(err)
		}
		if !rec {
			return r, c
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("restored server never finished recovery\n%s", r.Log())
		}
	}
}

// ordersScenario streams, backs up 1000 orders with the streamer running,
// adds 500 more, notes the time, deletes 200, and stops streaming once all
// is archived: a restore to the time has 1500 orders, to the latest 1300.
func (p *pitr) ordersScenario() (*pgbackup.Result, time.Time) {
	p.t.Helper()
	p.startStreaming()
	p.exec("CREATE TABLE orders (id int primary key, note text)")
	p.exec("INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 1000) g")
	res := p.backup()
	p.exec("INSERT INTO orders SELECT g, 'phase 2' FROM generate_series(1001, 1500) g")
	time.Sleep(20 * time.Millisecond)
	markTime := time.Now()
	time.Sleep(20 * time.Millisecond)
	p.exec("DELETE FROM orders WHERE id <= 200")
	p.waitArchived()
	p.stopWAL()
	return res, markTime
}

func count(t *testing.T, c *pgx.Conn, table string) int {
	t.Helper()
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func TestPointInTimeRestore(t *testing.T) {
	p := newPITR(t)
	p.startStreaming()
	p.exec("CREATE TABLE orders (id int primary key, note text)")
	p.exec("INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 1000) g")
	res := p.backup()
	if res.Meta.WALArchivedBy != "streamer" {
		t.Fatalf("WAL archived by %q with a streamer running", res.Meta.WALArchivedBy)
	}
	p.exec("INSERT INTO orders SELECT g, 'phase 2' FROM generate_series(1001, 1500) g")
	p.exec("CREATE TABLE late (x int)") // a table created after the base
	p.exec("INSERT INTO late VALUES (1), (2)")
	var xid string
	if err := p.conn.QueryRow(context.Background(), "INSERT INTO late VALUES (99) RETURNING pg_current_xact_id()::text").Scan(&xid); err != nil {
		t.Fatal(err)
	}
	p.exec("DELETE FROM late WHERE x = 99")
	mark := p.lsn()
	time.Sleep(20 * time.Millisecond)
	markTime := time.Now()
	time.Sleep(20 * time.Millisecond)
	p.exec("SELECT pg_create_restore_point('before_delete')")
	p.exec("DELETE FROM orders WHERE id <= 200")
	p.exec("INSERT INTO late VALUES (3)")
	p.waitArchived()
	p.stopWAL() // nothing new lands in the repository while restored servers read it

	c := p.restore(Target{LSN: mark})
	if n := count(t, c, "orders"); n != 1500 {
		t.Fatalf("restore to LSN %s: %d orders, want 1500", mark, n)
	}
	if n := count(t, c, "late"); n != 2 {
		t.Fatalf("restore to LSN: %d rows in late, want 2", n)
	}
	c = p.restore(Target{XID: xid}) // inclusive: up to and with that transaction
	if n := count(t, c, "late"); n != 3 {
		t.Fatalf("restore to xid %s: %d rows in late, want 3 (the xid's row included)", xid, n)
	}
	c = p.restore(Target{Time: markTime})
	if n := count(t, c, "orders"); n != 1500 {
		t.Fatalf("restore to time: %d orders, want 1500", n)
	}
	c = p.restore(Target{Name: "before_delete"})
	if n := count(t, c, "orders"); n != 1500 {
		t.Fatalf("restore to named point: %d orders, want 1500", n)
	}
	c = p.restore(Target{Latest: true})
	if n, l := count(t, c, "orders"), count(t, c, "late"); n != 1300 || l != 3 {
		t.Fatalf("restore to latest: %d orders and %d late, want 1300 and 3", n, l)
	}
}

// TestPointInTimeRestoreOnObjectStores: stream, back up and restore to a
// time with the repository on Google Cloud Storage and on Azure Blob Storage
// (their emulators), PostgreSQL's restore_command fetching WAL from there.
func TestPointInTimeRestoreOnObjectStores(t *testing.T) {
	for _, store := range []struct {
		name string
		repo func(t *testing.T) string // sets the environment, returns the URL
	}{
		{"gs", func(t *testing.T) string {
			g := testenv.FakeGCSServer(t)
			g.SetEnv(t)
			return "gs://" + g.NewBucket(t) + "/pg-main"
		}},
		{"azblob", func(t *testing.T) string {
			a := storeenv.AzuriteServer(t)
			a.SetEnv(t)
			return "azblob://" + a.NewContainer(t) + "/pg-main"
		}},
	} {
		t.Run(store.name, func(t *testing.T) {
			p := newPITRAt(t, store.repo(t))
			_, markTime := p.ordersScenario()
			if n := count(t, p.restore(Target{Time: markTime}), "orders"); n != 1500 {
				t.Fatalf("restore to time from %s: %d orders, want 1500", p.repoURL, n)
			}
		})
	}
}

func TestBackupWithoutStreamerArchivesItsOwnWAL(t *testing.T) {
	p := newPITR(t)
	p.exec("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g")
	res := p.backup()
	if res.Meta.WALArchivedBy != "backup" {
		t.Fatalf("WAL archived by %q with no streamer", res.Meta.WALArchivedBy)
	}
	// The backup held its WAL with a temporary slot: none is left behind to
	// keep WAL on the server until its disk fills.
	var slots int
	if err := p.conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots").Scan(&slots); err != nil || slots != 0 {
		t.Fatalf("replication slots left behind by the backup: %d %v", slots, err)
	}
	c := p.restore(Target{Latest: true})
	if n := count(t, c, "t"); n != 100 {
		t.Fatalf("%d rows, want 100", n)
	}
}

func TestRestoreRefusesGapsAndUnreachableTargets(t *testing.T) {
	p := newPITR(t)
	p.startStreaming()
	p.exec("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g")
	p.backup()
	for i := 0; i < 3; i++ {
		p.exec("INSERT INTO t SELECT g FROM generate_series(1, 50000) g")
		p.exec("SELECT pg_switch_wal()")
	}
	p.exec("INSERT INTO t VALUES (1)")
	p.waitArchived()
	p.stopWAL()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "never")

	// Past the newest archived WAL: refused with the window.
	_, err := Restore(ctx, Config{Repo: p.repo, TargetDir: dir, Target: Target{LSN: "FF/0"}})
	if !errors.Is(err, restore.ErrUnreachable) || !strings.Contains(err.Error(), "recoverable window") {
		t.Fatalf("target past the archive: %v", err)
	}
	// In the future: refused.
	_, err = Restore(ctx, Config{Repo: p.repo, TargetDir: dir, Target: Target{Time: time.Now().Add(time.Hour)}})
	if !errors.Is(err, restore.ErrUnreachable) {
		t.Fatalf("target in the future: %v", err)
	}
	// A segment deleted from the middle: refused, naming the range, before
	// anything is written.
	st, _ := wal.LoadState(ctx, p.repo.Store(), wal.Geometry{SegSize: 16 << 20})
	tl := st.Latest()
	g := wal.Geometry{SegSize: 16 << 20}
	victim := g.FileName(tl.TLI, g.SegNo(tl.End)-1)
	if err := p.repo.Store().Delete(ctx, fmt.Sprintf("wal/%08X/%s", tl.TLI, victim)); err != nil {
		t.Fatal(err)
	}
	_, err = Restore(ctx, Config{Repo: p.repo, TargetDir: dir, Target: Target{Latest: true}})
	if !errors.Is(err, restore.ErrGap) || !strings.Contains(err.Error(), "WAL missing") {
		t.Fatalf("restore over a missing segment: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refused restore wrote %s", dir)
	}
	// verify reports the hole too.
	problems, err := VerifyWAL(ctx, p.repo)
	if err != nil || len(problems) != 1 || !strings.Contains(problems[0], "WAL missing") {
		t.Fatalf("verify over a missing segment: %v, %v", problems, err)
	}
}

func TestRestoreDetectsCorruptChunk(t *testing.T) {
	p := newPITR(t)
	p.exec("CREATE TABLE t AS SELECT g FROM generate_series(1, 100000) g")
	res := p.backup()
	// Corrupt the chunk of the biggest file.
	var big archive.FileEntry
	for _, f := range res.Manifest.Files {
		if len(f.Chunks) > 0 && f.Size > big.Size {
			big = f
		}
	}
	h := big.Chunks[0].ID.String()
	pack, off, n, err := p.repo.ChunkLocation(context.Background(), big.Chunks[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(p.repoDir, filepath.FromSlash(pack))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off+n/2] ^= 0x10
	os.WriteFile(path, b, 0o600)
	_, err = Restore(context.Background(), Config{Repo: p.repo, TargetDir: filepath.Join(t.TempDir(), "x"),
		Target: Target{Latest: true}, RestoreCommand: "false"})
	if !errors.Is(err, archive.ErrCorrupt) || !strings.Contains(err.Error(), h) {
		t.Fatalf("restore from a corrupt chunk: %v", err)
	}
}

// TestTablespaceRelocated: a table in a second tablespace comes back, with
// the tablespace restored to a new location; restoring over the original
// (still in use) location is refused.
func TestTablespaceRelocated(t *testing.T) {
	p := newPITR(t)
	p.startStreaming()
	loc := filepath.Join(t.TempDir(), "ts1")
	os.MkdirAll(loc, 0o700)
	p.pg.Grant(t, loc)
	p.exec(fmt.Sprintf("CREATE TABLESPACE ts1 LOCATION '%s'", loc))
	p.exec("CREATE TABLE far (x int) TABLESPACE ts1")
	p.exec("INSERT INTO far SELECT g FROM generate_series(1, 5000) g")
	res := p.backup()
	if len(res.Meta.Tablespaces) != 1 || res.Meta.Tablespaces[0].Location != loc {
		t.Fatalf("tablespaces in the manifest: %+v", res.Meta.Tablespaces)
	}
	p.exec("INSERT INTO far SELECT g FROM generate_series(5001, 6000) g")
	p.waitArchived()
	p.stopWAL()

	_, err := Restore(context.Background(), Config{Repo: p.repo, TargetDir: filepath.Join(t.TempDir(), "x"),
		Target: Target{Latest: true}, RestoreCommand: "false"})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore over the live tablespace: %v", err)
	}
	newLoc := filepath.Join(t.TempDir(), "ts1-restored")
	c := p.restoreWith(Target{Latest: true}, map[string]string{res.Meta.Tablespaces[0].OID: newLoc})
	if n := count(t, c, "far"); n != 6000 {
		t.Fatalf("%d rows in the relocated tablespace's table, want 6000", n)
	}
	var where string
	if err := c.QueryRow(context.Background(), "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'ts1'").Scan(&where); err != nil || where != newLoc {
		t.Fatalf("tablespace location after restore: %q, %v", where, err)
	}
}

// TestDeltaRestore: restoring again over a directory a server already ran
// on keeps the chunks still right and fetches the rest.
func TestDeltaRestore(t *testing.T) {
	p := newPITR(t)
	p.startStreaming()
	p.exec("CREATE TABLE big AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 200000) g")
	p.backup()
	p.exec("INSERT INTO big SELECT g, 'after' FROM generate_series(200001, 200100) g")
	p.waitArchived()
	p.stopWAL()
	p.pg.Grant(t, p.repoDir, p.keyFile)
	dir := filepath.Join(t.TempDir(), "restored")
	cmd := fmt.Sprintf("%s wal-fetch --repo %s --identity-file %s %%f %%p", testenv.TidemarkBinary(t), p.repoDir, p.keyFile)
	run := func(delta bool) *Plan {
		plan, err := Restore(context.Background(), Config{Repo: p.repo, TargetDir: dir, Target: Target{Latest: true},
			Jobs: 4, RestoreCommand: cmd, Log: p.log(), Delta: delta})
		if err != nil {
			t.Fatal(err)
		}
		r, err := testenv.StartPostgres(testenv.PostgresOptions{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Destroy()
		c, err := pgx.Connect(context.Background(), r.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
			var rec bool
			c.QueryRow(context.Background(), "SELECT pg_is_in_recovery()").Scan(&rec)
			if !rec {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no promotion\n%s", r.Log())
			}
		}
		if n := count(t, c, "big"); n != 200100 {
			t.Fatalf("delta=%v: %d rows, want 200100", delta, n)
		}
		c.Exec(context.Background(), "INSERT INTO big VALUES (0, 'written on the restored server')")
		return plan
	}
	run(false)
	plan := run(true) // over the directory the first restored server changed
	if plan.Kept == 0 || plan.Fetched >= plan.Kept {
		t.Fatalf("delta restore kept %d bytes and fetched %d: expected to keep most", plan.Kept, plan.Fetched)
	}
	t.Logf("delta restore kept %d bytes, fetched %d", plan.Kept, plan.Fetched)
}
