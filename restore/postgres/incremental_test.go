package postgres

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/all"
	pgbackup "github.com/tidemark/tidemark/basebackup/postgres"
)

// backupAs takes a backup of type typ with the identity (an incremental
// reads its reference's manifest) or, when publicOnly, without it.
func (p *pitr) backupAs(typ string, publicOnly, fallback bool) (*pgbackup.Result, error) {
	p.t.Helper()
	repo := p.repo
	if publicOnly {
		s, err := all.Open(context.Background(), p.repoURL)
		if err != nil {
			p.t.Fatal(err)
		}
		if repo, err = archive.Open(context.Background(), s, archive.Keys{}); err != nil {
			p.t.Fatal(err)
		}
	}
	return pgbackup.Backup(context.Background(), pgbackup.Config{Repo: repo, Source: p.pg.URL("postgres"),
		Slot: "tidemark", Type: typ, FallbackFull: fallback, FastCheckpoint: true, Jobs: 4, Log: p.log()})
}

// fingerprint is a digest of every row of the test's tables.
func fingerprint(t *testing.T, c *pgx.Conn) string {
	t.Helper()
	var parts []string
	for _, q := range []string{
		"SELECT md5(string_agg(id || ':' || note, ',' ORDER BY id)) FROM orders",
		"SELECT md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM shrinking",
		"SELECT count(*)::text FROM orders WHERE note LIKE 'hot%'",
		"SELECT md5(coalesce(string_agg(id::text, ',' ORDER BY id), '')) FROM later",
		"SELECT count(*)::text FROM pg_class WHERE relname = 'dropped'",
	} {
		var v *string
		if err := c.QueryRow(context.Background(), q).Scan(&v); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if v == nil {
			parts = append(parts, "null")
		} else {
			parts = append(parts, *v)
		}
	}
	return strings.Join(parts, " ")
}

// TestIncrementalBackup (PostgreSQL 17, summarize_wal = on): a full backup,
// then two block-level incrementals after a hot-range update, inserts, a
// dropped table, a truncated one and a new one, then a differential. Each
// incremental receives a fraction of the full backup's bytes, stores
// INCREMENTAL.* files and records its reference; restores from the
// differential and from chains of three and of two match the source at
// their points in time.
func TestIncrementalBackup(t *testing.T) {
	p := newPITRWith(t, "", 17, "summarize_wal=on")
	p.startStreaming()
	p.exec("CREATE TABLE orders (id int primary key, note text)")
	p.exec("INSERT INTO orders SELECT g, md5(g::text) || repeat('x', 100) FROM generate_series(1, 40000) g")
	p.exec("CREATE TABLE shrinking (id int, v text)")
	p.exec("INSERT INTO shrinking SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
	p.exec("CREATE TABLE dropped AS SELECT g FROM generate_series(1, 1000) g")
	// Settled data, as in a database loaded long ago: hint bits and the
	// visibility map set (the first scan after a bulk load rewrites every page).
	p.exec("VACUUM (FREEZE, ANALYZE)")
	full, err := p.backupAs("full", true, false)
	if err != nil {
		t.Fatal(err)
	}

	// Rows keep their size: shorter new versions would land in the few
	// bytes free on every page (the free space map spreads them) and
	// touch the whole table.
	p.exec("UPDATE orders SET note = 'hot ' || substr(note, 5) WHERE id BETWEEN 10001 AND 12000")
	p.exec("INSERT INTO orders SELECT g, 'new' FROM generate_series(40001, 41000) g")
	p.exec("DROP TABLE dropped")
	p.exec("DELETE FROM shrinking WHERE id > 5000")
	p.exec("VACUUM shrinking") // truncates the relation
	p.exec("CREATE TABLE later AS SELECT g AS id FROM generate_series(1, 500) g")
	inc1, err := p.backupAs("incremental", false, false)
	if err != nil {
		t.Fatal(err)
	}
	if inc1.Meta.IncrementalFrom != full.Manifest.ID || len(inc1.Manifest.DependsOn) != 1 || inc1.Manifest.DependsOn[0] != full.Manifest.ID {
		t.Fatalf("incremental refers to %q (depends on %v), want %s", inc1.Meta.IncrementalFrom, inc1.Manifest.DependsOn, full.Manifest.ID)
	}
	t.Logf("received from the server: full %d bytes, incremental %d (%.2f×)", full.Meta.Received, inc1.Meta.Received,
		float64(inc1.Meta.Received)/float64(full.Meta.Received))
	if inc1.Meta.Received*3 > full.Meta.Received {
		t.Fatalf("incremental received %d bytes, the full backup %d: want well under a third", inc1.Meta.Received, full.Meta.Received)
	}
	incFiles := 0
	for _, f := range inc1.Manifest.Files {
		if strings.HasPrefix(filepath.Base(f.Path), "INCREMENTAL.") {
			incFiles++
		}
	}
	if incFiles == 0 {
		t.Fatal("the incremental backup holds no INCREMENTAL.* file")
	}
	time.Sleep(20 * time.Millisecond)
	afterInc1 := time.Now()
	time.Sleep(20 * time.Millisecond)
	atInc1 := fingerprint(t, p.conn)

	p.exec("UPDATE orders SET note = 'hot again ' || substr(note, 11) WHERE id BETWEEN 11001 AND 13000")
	p.exec("INSERT INTO later SELECT g FROM generate_series(501, 600) g")
	inc2, err := p.backupAs("incremental", false, false)
	if err != nil {
		t.Fatal(err)
	}
	if inc2.Meta.IncrementalFrom != inc1.Manifest.ID {
		t.Fatalf("second incremental refers to %q, want %s", inc2.Meta.IncrementalFrom, inc1.Manifest.ID)
	}
	time.Sleep(20 * time.Millisecond)
	afterInc2 := time.Now()
	time.Sleep(20 * time.Millisecond)
	atInc2 := fingerprint(t, p.conn)
	p.exec("DELETE FROM orders WHERE id <= 100")
	diff, err := p.backupAs("differential", false, false) // against the newest full one
	if err != nil || diff.Meta.IncrementalFrom != full.Manifest.ID {
		t.Fatalf("differential: %v, refers to %q, want %s", err, diff.Meta.IncrementalFrom, full.Manifest.ID)
	}
	p.exec("INSERT INTO later SELECT g FROM generate_series(601, 650) g")
	p.waitArchived()
	latest := fingerprint(t, p.conn)
	p.stopWAL()

	if got := fingerprint(t, p.restore(Target{Latest: true})); got != latest {
		t.Fatalf("restore from the differential to latest:\n got %s\nwant %s", got, latest)
	}
	// Between the second incremental and the differential: a chain of three.
	plan, err := PlanRestore(context.Background(), p.repo, Target{Time: afterInc2})
	if err != nil || plan.Backup.ID != inc2.Manifest.ID || len(plan.Chain) != 2 {
		t.Fatalf("plan for %s: %+v, %v; want backup %s with a chain of two", afterInc2, plan, err, inc2.Manifest.ID)
	}
	if got := fingerprint(t, p.restore(Target{Time: afterInc2})); got != atInc2 {
		t.Fatalf("restore from a chain of three:\n got %s\nwant %s", got, atInc2)
	}
	// A time between the two incrementals restores from the first: a chain of two.
	plan, err = PlanRestore(context.Background(), p.repo, Target{Time: afterInc1})
	if err != nil || plan.Backup.ID != inc1.Manifest.ID || len(plan.Chain) != 1 {
		t.Fatalf("plan for %s: %+v, %v; want backup %s with a chain of one", afterInc1, plan, err, inc1.Manifest.ID)
	}
	if got := fingerprint(t, p.restore(Target{Time: afterInc1})); got != atInc1 {
		t.Fatalf("restore from a chain of two:\n got %s\nwant %s", got, atInc1)
	}
	problems, err := VerifyWAL(context.Background(), p.repo)
	if err != nil || len(problems) > 0 {
		t.Fatalf("verify: %v %v", problems, err)
	}
	// Without its reference, the second incremental cannot be restored:
	// verify says so, and a restore passes it over, naming why, to the
	// full base, whose WAL reaches the same target.
	if err := p.repo.Store().Delete(context.Background(), "backups/"+inc1.Manifest.ID); err != nil {
		t.Fatal(err)
	}
	if problems, _ := VerifyWAL(context.Background(), p.repo); len(problems) != 1 || !strings.Contains(problems[0], inc1.Manifest.ID) {
		t.Fatalf("verify after removing the reference: %v", problems)
	}
	plan, err = PlanRestore(context.Background(), p.repo, Target{Time: afterInc2})
	if err != nil || plan.Backup.ID != full.Manifest.ID || len(plan.Skipped) != 1 || !strings.Contains(plan.Skipped[0], inc1.Manifest.ID) ||
		!strings.Contains(plan.Skipped[0], inc2.Manifest.ID) || len(plan.Chain) != 0 {
		t.Fatalf("plan without the reference: %+v, %v", plan, err)
	}
}

// TestIncrementalRefusals: what stops an incremental is said, and a full
// backup is taken instead only when asked.
func TestIncrementalRefusals(t *testing.T) {
	p := newPITRWith(t, "", 17)
	p.exec("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g")
	if _, err := p.backupAs("incremental", false, false); !errors.Is(err, pgbackup.ErrNoIncremental) || !strings.Contains(err.Error(), "summarize_wal") {
		t.Fatalf("incremental with summarize_wal off: %v", err)
	}
	res, err := p.backupAs("incremental", false, true)
	if err != nil || res.Manifest.Type != "full" || res.Meta.IncrementalFrom != "" {
		t.Fatalf("with fallback: %v, %+v", err, res)
	}
	p.exec("ALTER SYSTEM SET summarize_wal = on")
	p.exec("SELECT pg_reload_conf()")
	if _, err := p.backupAs("incremental", true, false); !errors.Is(err, pgbackup.ErrNoIncremental) || !strings.Contains(err.Error(), "identity") {
		t.Fatalf("incremental without the identity: %v", err)
	}
}

// TestIncrementalAfterPromotion: after a failover the new primary has no
// WAL summaries back to the last backup; the server refuses the
// incremental, tidemark says so, and with --fallback-full takes a full one.
func TestIncrementalAfterPromotion(t *testing.T) {
	p := newPITRWith(t, "", 17, "summarize_wal=on")
	p.startStreaming()
	p.exec("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
	if _, err := p.backupAs("full", true, false); err != nil {
		t.Fatal(err)
	}
	p.exec("INSERT INTO t SELECT g FROM generate_series(1001, 2000) g")
	p.waitArchived()
	p.stopWAL()
	promoted, c := p.restoreServer(Target{Latest: true}, nil)
	p.pg, p.conn = promoted, c
	p.exec("ALTER SYSTEM SET summarize_wal = on")
	p.exec("SELECT pg_reload_conf()")
	p.startStreaming()
	_, err := p.backupAs("incremental", false, false)
	if !errors.Is(err, pgbackup.ErrNoIncremental) || !strings.Contains(err.Error(), "summar") {
		t.Fatalf("incremental on the promoted server: %v", err)
	}
	t.Logf("refused as: %v", err)
	res, err := p.backupAs("incremental", false, true)
	if err != nil || res.Manifest.Type != "full" || res.Meta.IncrementalFrom != "" || len(res.Manifest.DependsOn) > 0 {
		t.Fatalf("with fallback: %v, %+v", err, res)
	}
}
