package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/internal/testenv"
)

// pgRepo is a PostgreSQL repository with two base backups and WAL after
// them, to damage copies of.
type pgRepo struct {
	dir, key string
	pg       *testenv.Postgres
	rows     int // in table t at the latest point
	backups  []string
}

func buildPGRepo(t *testing.T) *pgRepo {
	t.Helper()
	pg := testenv.NewPostgreSQL(t, testenv.PostgresOptions{})
	c := newCLI(t)
	r := &pgRepo{dir: filepath.Join(t.TempDir(), "repo"), pg: pg}
	var recipient string
	r.key, recipient = keyFile(t, pg)
	c.expect(0, "init", "--repo", r.dir, "--recipient", recipient)
	stream := c.start("stream", "--repo", r.dir, "--source", pg.URL("postgres"), "--slot", "tidemark", "--create-slot",
		"--flush-interval", "100ms", "--log-level", "warn")
	sql := func(q string) {
		t.Helper()
		pg.Exec(t, q)
	}
	sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
	sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
	c.expect(0, "backup", "--repo", r.dir, "--source", pg.URL("postgres"), "--fast-checkpoint", "--log-level", "warn")
	sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(20001, 30000) g")
	c.expect(0, "backup", "--repo", r.dir, "--source", pg.URL("postgres"), "--fast-checkpoint", "--log-level", "warn")
	for i := 0; i < 3; i++ {
		sql(fmt.Sprintf("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(%d, %d) g", 30001+i*5000, 35000+i*5000))
		sql("SELECT pg_switch_wal()")
	}
	r.rows = 45000
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	must(t, err)
	defer conn.Close(ctx)
	var lsn string
	must(t, conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn))
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		var ok bool
		conn.QueryRow(ctx, "SELECT flush_lsn >= $1::pg_lsn FROM pg_stat_replication WHERE application_name = 'tidemark'", lsn).Scan(&ok)
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the streamer did not archive the WAL")
		}
	}
	if code := stream.term(); code != 0 {
		t.Fatalf("streamer: exit %d\n%s", code, stream.out.String())
	}
	r.backups = r.names(t, r.dir, "backups/")
	if len(r.backups) != 2 {
		t.Fatalf("backups: %v", r.backups)
	}
	return r
}

// names lists the objects under prefix (relative names), sorted.
func (r *pgRepo) names(t *testing.T, dir, prefix string) []string {
	t.Helper()
	var out []string
	filepath.Walk(filepath.Join(dir, prefix), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && !strings.HasPrefix(fi.Name(), ".") {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// copyRepo copies the repository, for one case of damage.
func (r *pgRepo) copyRepo(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "repo")
	if out, err := exec.Command("cp", "-a", r.dir, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	return dst
}

// damage does one kind of harm to the object name in dir.
func damage(t *testing.T, dir, name, how string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	b, err := os.ReadFile(p)
	must(t, err)
	switch how {
	case "flip":
		b[len(b)/2] ^= 0x40
		must(t, os.WriteFile(p, b, 0o640))
	case "truncate":
		must(t, os.WriteFile(p, b[:len(b)/2], 0o640))
	case "delete":
		must(t, os.Remove(p))
	}
}

// outcome is what a command did on a damaged repository.
type outcome struct {
	code           int
	stdout, stderr string
}

func (o outcome) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", o.code, o.stdout, o.stderr)
}

func runOutcome(c cli, args ...string) outcome {
	out, errs, code := c.run(args...)
	return outcome{code, out, errs}
}

// TestDamagedObjects damages, truncates and deletes one object of each
// kind in turn. verify must name each problem (exit 3); restore of the
// latest point must succeed from intact objects or refuse naming the
// object; what only expire or status needs is checked with them.
func TestDamagedObjects(t *testing.T) {
	r := buildPGRepo(t)
	c := newCLI(t)
	newest := strings.TrimPrefix(r.backups[1], "backups/")
	packs := r.names(t, r.dir, "packs/")
	biggest := packs[0]
	for _, p := range packs {
		if size(t, r.dir, p) > size(t, r.dir, biggest) {
			biggest = p
		}
	}
	var segments []string
	for _, w := range r.names(t, r.dir, "wal/00000001/") {
		if !strings.Contains(w, ".part-") {
			segments = append(segments, w)
		}
	}
	segment := segments[len(segments)-2] // after both backups, before the end
	locks := r.names(t, r.dir, "locks/maintenance/")
	kinds := []struct {
		kind, name string
		check      func(t *testing.T, how, repo string, verify, restore outcome)
	}{
		{"pack", biggest, func(t *testing.T, how, repo string, verify, restore outcome) {
			mustContain(t, "verify", verify.stdout, biggest)
			refusedNaming(t, restore, biggest)
		}},
		{"chunk index", r.names(t, r.dir, "index/")[0], func(t *testing.T, how, repo string, verify, restore outcome) {
			mustContain(t, "verify", verify.stdout, "no chunk index")
			succeeded(t, restore)
		}},
		{"refs", "refs/" + newest, func(t *testing.T, how, repo string, verify, restore outcome) {
			mustContain(t, "verify", verify.stdout, "refs/"+newest)
			succeeded(t, restore)
			expire := runOutcome(c, "expire", "--repo", repo, "--keep-last", "9", "--dry-run")
			if expire.code != 3 || !strings.Contains(expire.stderr, "refs/"+newest) {
				t.Fatalf("expire with refs %s: %s", how, expire)
			}
		}},
		{"catalog entry", "catalog/" + newest, func(t *testing.T, how, repo string, verify, restore outcome) {
			mustContain(t, "verify", verify.stdout, "catalog/"+newest)
			succeeded(t, restore)
			status := runOutcome(c, "status", "--repo", repo)
			if status.code != 0 || (how != "delete" && !strings.Contains(status.stdout, "catalog")) {
				t.Fatalf("status with the catalog entry %s: %s", how, status)
			}
		}},
		{"manifest", "backups/" + newest, func(t *testing.T, how, repo string, verify, restore outcome) {
			succeeded(t, restore)
			if how == "delete" { // a backup that never committed, as far as anyone can tell
				mustContain(t, "verify's leftovers", verify.stdout, "leftover: refs/"+newest)
				return
			}
			mustContain(t, "verify", verify.stdout, "backups/"+newest)
			mustContain(t, "restore's warning", restore.stderr, "backups/"+newest, "an older backup is used")
			if how == "flip" { // the older base and the WAL reach the same latest point
				r.pg.Grant(t, repo)
				r.checkRows(t, restoreAndStart(t, c, repo, r.key, r.pg))
			}
		}},
		{"WAL segment", segment, func(t *testing.T, how, repo string, verify, restore outcome) {
			if how == "delete" {
				mustContain(t, "verify", verify.stdout, "WAL missing")
				if restore.code != 6 || !strings.Contains(restore.stderr, "WAL missing") {
					t.Fatalf("restore across a deleted segment: %s", restore)
				}
				return
			}
			mustContain(t, "verify", verify.stdout, segment)
			succeeded(t, restore) // the plan needs only the listing; recovery reads the segment:
			if how == "flip" {
				started := r.startRestore(t, repo)
				if started.code != 3 || !strings.Contains(started.stderr, filepath.Base(segment)) {
					t.Fatalf("restore --start through a damaged segment: %s", started)
				}
			}
		}},
		{"config", "config", func(t *testing.T, how, repo string, verify, restore outcome) {
			for what, o := range map[string]outcome{"verify": verify, "restore": restore} {
				if o.code == 0 || !strings.Contains(o.stderr, "config") && !strings.Contains(o.stderr, "no repository here") {
					t.Fatalf("%s with the config %s: %s", what, how, o)
				}
			}
		}},
		{"lock", locks[len(locks)-1], func(t *testing.T, how, repo string, verify, restore outcome) {
			succeeded(t, restore)
			if how != "delete" {
				mustContain(t, "verify", verify.stdout, locks[len(locks)-1])
			}
			// A damaged released lock, written long ago, no longer blocks
			// every backup and expire.
			old := time.Now().Add(-time.Hour)
			os.Chtimes(filepath.Join(repo, filepath.FromSlash(locks[len(locks)-1])), old, old)
			if o := runOutcome(c, "expire", "--repo", repo, "--keep-last", "9"); o.code != 0 {
				t.Fatalf("expire after the lock was %s: %s", how, o)
			}
		}},
		{"heartbeat", r.names(t, r.dir, "heartbeats/")[0], func(t *testing.T, how, repo string, verify, restore outcome) {
			succeeded(t, restore)
			status := runOutcome(c, "status", "--repo", repo)
			if status.code != 0 {
				t.Fatalf("status with the heartbeat %s: %s", how, status)
			}
			if how != "delete" {
				mustContain(t, "verify", verify.stdout, "heartbeats/")
				mustContain(t, "status", status.stdout, "unreadable")
			}
		}},
	}
	for _, k := range kinds {
		for _, how := range []string{"flip", "truncate", "delete"} {
			t.Run(k.kind+"/"+how, func(t *testing.T) {
				repo := r.copyRepo(t)
				damage(t, repo, k.name, how)
				r.pg.Grant(t, repo) // restore_command reads it as the server's OS user
				verify := runOutcome(c, "verify", "--repo", repo, "--identity-file", r.key)
				switch {
				case k.kind == "config":
				case how == "delete" && (k.kind == "manifest" || k.kind == "lock" || k.kind == "heartbeat"):
					if verify.code != 0 {
						t.Fatalf("verify: %s", verify)
					}
				case verify.code != 3:
					t.Fatalf("verify did not fail: %s", verify)
				}
				args := []string{"restore", "--repo", repo, "--identity-file", r.key, "--latest", "--target-dir", filepath.Join(t.TempDir(), "restored")}
				if k.kind == "refs" || k.kind == "lock" || k.kind == "heartbeat" {
					args = append(args, "--dry-run") // restores never read them: the plan is what could break
				}
				restore := runOutcome(c, args...)
				k.check(t, how, repo, verify, restore)
			})
		}
	}
}

// checkRows checks a restored server holds the latest point's rows.
func (r *pgRepo) checkRows(t *testing.T, restored *testenv.Postgres) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, restored.URL("postgres"))
	must(t, err)
	defer conn.Close(ctx)
	testenv.WaitPromoted(t, conn)
	var n int
	must(t, conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n))
	if n != r.rows {
		t.Fatalf("restored %d rows, the latest point has %d", n, r.rows)
	}
}

func size(t *testing.T, dir, name string) int64 {
	fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(name)))
	must(t, err)
	return fi.Size()
}

func succeeded(t *testing.T, o outcome) {
	t.Helper()
	if o.code != 0 {
		t.Fatalf("restore from the intact objects failed: %s", o)
	}
}

// refusedNaming: the restore failed, naming the damaged object.
func refusedNaming(t *testing.T, o outcome, name string) {
	t.Helper()
	if o.code == 0 || !strings.Contains(o.stderr, name) {
		t.Fatalf("restore did not refuse naming %s: %s", name, o)
	}
}

// startRestore runs `restore --latest --start` as the database's OS user,
// as a DBA would, so recovery runs and reads every archived segment.
func (r *pgRepo) startRestore(t *testing.T, repo string) outcome {
	t.Helper()
	r.pg.Grant(t, repo)
	parent := t.TempDir()
	r.pg.Grant(t, parent)
	port, err := testenv.FreePort()
	must(t, err)
	c := newCLI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := c.command(ctx, "restore", "--repo", repo, "--identity-file", r.key, "--latest", "--target-dir", filepath.Join(parent, "d"),
		"--start", "--port", strconv.Itoa(port), "--start-timeout", "90s")
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		must(t, err)
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		cmd.Dir = parent
	}
	var out, errb testenv.LockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Run()
	t.Cleanup(func() {
		exec.Command(filepath.Join(testenv.PostgresBinDir, "pg_ctl"), "stop", "-D", filepath.Join(parent, "d"), "-m", "immediate").Run()
	})
	return outcome{cmd.ProcessState.ExitCode(), out.String(), errb.String()}
}
