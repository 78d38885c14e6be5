package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/internal/testenv"
)

// docBlock returns the fenced block of a setup document that starts with
// the marker line (`-- grants:mariadb`, `# grants:postgres-hba`), without
// comment lines: what the document tells a DBA to run, verbatim.
func docBlock(t *testing.T, doc, marker string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", doc))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), marker)
	body, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatalf("docs/%s has no block %q", doc, marker)
	}
	var lines []string
	for _, l := range strings.Split(body, "\n")[1:] {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "--") && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestSetupMariaDB: the users and grants docs/setup-mysql.md gives — one
// to stream, one to back up, neither root — are enough for a stream and a
// backup of a default install (the empty test database, a view, a
// routine, a trigger and an event included), run side by side.
func TestSetupMariaDB(t *testing.T) {
	src := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	for _, sql := range []string{"CREATE DATABASE shop", "CREATE TABLE shop.orders (id INT PRIMARY KEY, amount DECIMAL(10,2))",
		"INSERT INTO shop.orders SELECT seq, seq * 1.5 FROM shop.seq_1_to_500",
		"CREATE VIEW shop.big AS SELECT * FROM shop.orders WHERE amount > 100",
		"CREATE TABLE shop.audit (n INT)", "CREATE TRIGGER shop.count_orders AFTER INSERT ON shop.orders FOR EACH ROW INSERT INTO shop.audit VALUES (NEW.id)",
		"CREATE PROCEDURE shop.total() SELECT SUM(amount) FROM shop.orders",
		"CREATE EVENT shop.nightly ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM shop.audit"} {
		src.Exec(t, sql)
	}
	dir := t.TempDir()
	passwords := map[string]string{"change-me-stream": "s-" + testenv.NewName(), "change-me-backup": "b-" + testenv.NewName()}
	for _, stmt := range strings.SplitAfter(strings.Join(docBlock(t, "setup-mysql.md", "-- grants:mariadb"), " "), ";") {
		if stmt = strings.TrimSpace(stmt); stmt != "" {
			for doc, real := range passwords {
				stmt = strings.ReplaceAll(stmt, doc, real)
			}
			src.Exec(t, stmt)
		}
	}
	pwFile := func(name, pw string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(pw+"\n"), 0o600)
		return p
	}
	streamPW, backupPW := pwFile("stream.pass", passwords["change-me-stream"]), pwFile("backup.pass", passwords["change-me-backup"])
	repo := filepath.Join(dir, "repo")
	key, id := keyFile(t)
	expect(t, 0, "init", "--repo", repo, "--recipient", id.Recipient().String())

	// A grant short, the stream stops at once naming it (MariaDB answers the
	// dump with a misleading "Access denied … using password: YES"): no
	// reconnect can grant it, so retrying forever would only hide it.
	src.Exec(t, "REVOKE REPLICATION SLAVE ON *.* FROM 'tidemark_stream'@'%'")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	denied, err := exec.CommandContext(ctx, testenv.TidemarkBinary(t), "stream", "--repo", repo, "--source", "mysql://tidemark_stream@"+src.Addr()+"/",
		"--password-file", streamPW).CombinedOutput()
	cancel()
	if code := exitStatus(err); code != exitError || !strings.Contains(string(denied), "needs REPLICATION SLAVE") {
		t.Fatalf("stream without REPLICATION SLAVE: exit %d (%v)\n%s", code, err, denied)
	}
	src.Exec(t, "GRANT REPLICATION SLAVE ON *.* TO 'tidemark_stream'@'%'")
	stream := exec.Command(testenv.TidemarkBinary(t), "stream", "--repo", repo, "--source", "mysql://tidemark_stream@"+src.Addr()+"/",
		"--password-file", streamPW, "--flush-interval", "100ms")
	var streamLog strings.Builder
	stream.Stdout, stream.Stderr = &streamLog, &streamLog
	if err := stream.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stream.Process.Signal(syscall.SIGTERM); stream.Wait() }()
	src.Exec(t, "INSERT INTO shop.orders VALUES (501, 9.99)")
	// One grant short, information_schema would hide the trigger or the
	// event and the backup leave it out: refused instead, naming the grant.
	for _, priv := range []string{"TRIGGER", "EVENT"} {
		src.Exec(t, "REVOKE "+priv+" ON *.* FROM 'tidemark_backup'@'%'")
		_, errs, code := run(t, "backup", "--repo", repo, "--source", "mysql://tidemark_backup@"+src.Addr()+"/", "--password-file", backupPW)
		if code == 0 || !strings.Contains(errs, priv+" privilege") {
			t.Fatalf("backup without %s: exit %d: %s", priv, code, errs)
		}
		src.Exec(t, "GRANT "+priv+" ON *.* TO 'tidemark_backup'@'%'")
	}
	out, errs, code := run(t, "backup", "--repo", repo, "--source", "mysql://tidemark_backup@"+src.Addr()+"/", "--password-file", backupPW, "--json")
	if code != 0 {
		t.Fatalf("backup as tidemark_backup: exit %d\n%s\n%s\nstream log:\n%s", code, out, errs, streamLog.String())
	}
	src.Exec(t, "INSERT INTO shop.orders VALUES (502, 19.99)")
	waitStatus(t, repo, func(st statusView) bool {
		return len(st.Backups) == 1 && len(st.Streams) == 1 && st.Streams[0].Latest != nil
	},
		func() string { return streamLog.String() })
	if st := statusOf(t, repo); len(st.Streams[0].Gaps) != 0 || st.Streams[0].Earliest == nil {
		t.Fatalf("status: %+v\nstream log:\n%s", st.Streams, streamLog.String())
	}
	if strings.Contains(streamLog.String(), "denied") {
		t.Fatalf("stream log:\n%s", streamLog.String())
	}
	// What those grants let the backup see is all there is: a privilege
	// short, information_schema hides a trigger or an event instead of
	// refusing, so the restore must hold every one of them.
	stream.Process.Signal(syscall.SIGTERM) // flushes what it received
	stream.Wait()
	dst := testenv.NewMariaDB(t, testenv.MariaDBOptions{ServerID: 2})
	out, _ = expect(t, 0, "restore", "--repo", repo, "--identity-file", key, "--target", dst.URL(), "--latest", "--json")
	var restored struct {
		Engine, Backup string
		Tables         int
		Rows           int64
	}
	if err := json.Unmarshal([]byte(out), &restored); err != nil || restored.Engine != "mysql" || restored.Backup == "" || restored.Rows < 500 {
		t.Fatalf("restore --json: %v\n%s", err, out)
	}
	dc, err := dst.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	r, err := dc.Execute(`SELECT (SELECT COUNT(*) FROM shop.orders), (SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = 'shop'),
		(SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'shop'), (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'shop'),
		(SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'shop')`)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for i := 0; i < 5; i++ {
		n, _ := r.GetInt(0, i)
		got = append(got, n)
	}
	if fmt.Sprint(got) != "[502 1 1 1 1]" {
		t.Fatalf("restored orders, views, routines, triggers, events: %v, want [502 1 1 1 1]", got)
	}
}

type statusView = struct {
	Backups []struct{ ID string }
	Streams []struct {
		Latest   *time.Time
		Earliest *time.Time
		Gaps     []string
	}
}

// waitStatus polls `status --json` until ok holds (a minute at most).
func waitStatus(t *testing.T, repo string, ok func(statusView) bool, log func() string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		st := statusOf(t, repo)
		var v statusView
		for _, b := range st.Backups {
			v.Backups = append(v.Backups, struct{ ID string }{b.ID})
		}
		for _, s := range st.Streams {
			v.Streams = append(v.Streams, struct {
				Latest   *time.Time
				Earliest *time.Time
				Gaps     []string
			}{s.Latest, s.Earliest, s.Gaps})
		}
		if ok(v) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never got there: %+v\nlog:\n%s", st, log())
		}
	}
}

// TestSetupPostgres: the role and the pg_hba.conf lines
// docs/setup-postgres.md gives — a REPLICATION role, not a superuser,
// with a password from a .pgpass file — are enough to stream and to back
// up, with pg_hba.conf holding only those lines for it.
func TestSetupPostgres(t *testing.T) {
	ctx := context.Background()
	pg := testenv.NewPostgreSQL(t, testenv.PostgresOptions{Conf: []string{"password_encryption=scram-sha-256"}})
	password := "p-" + testenv.NewName()
	for _, stmt := range docBlock(t, "setup-postgres.md", "-- grants:postgres") {
		pg.Exec(t, strings.ReplaceAll(stmt, "change-me", password))
	}
	// pg_hba.conf: the superuser the test administers with, then exactly
	// the document's lines for the role (its address: this host).
	hba := []string{"local all postgres trust", "host all postgres 127.0.0.1/32 trust"}
	for _, l := range docBlock(t, "setup-postgres.md", "# grants:postgres-hba") {
		hba = append(hba, strings.ReplaceAll(l, "192.0.2.10/32", "127.0.0.1/32"))
	}
	if err := os.WriteFile(filepath.Join(pg.DataDir, "pg_hba.conf"), []byte(strings.Join(hba, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pg.Exec(t, "SELECT pg_reload_conf()")
	dir := t.TempDir()
	pgpass := filepath.Join(dir, "pgpass")
	os.WriteFile(pgpass, []byte(fmt.Sprintf("127.0.0.1:%d:*:tidemark:%s\n", pg.Port, password)), 0o600)
	t.Setenv("PGPASSFILE", pgpass)
	source := fmt.Sprintf("postgres://tidemark@127.0.0.1:%d/postgres?sslmode=disable", pg.Port)
	repo := filepath.Join(dir, "repo")
	_, id := keyFile(t)
	expect(t, 0, "init", "--repo", repo, "--recipient", id.Recipient().String())
	// Without the password the role is refused: pg_hba.conf really asks.
	os.Setenv("PGPASSFILE", filepath.Join(dir, "none"))
	if _, errs, code := run(t, "backup", "--repo", repo, "--source", source); code == 0 || !regexp.MustCompile(`password|authentication`).MatchString(errs) {
		t.Fatalf("backup without a password: exit %d: %s", code, errs)
	}
	os.Setenv("PGPASSFILE", pgpass)
	stream := exec.Command(testenv.TidemarkBinary(t), "stream", "--repo", repo, "--source", source, "--create-slot", "--flush-interval", "100ms")
	var streamLog strings.Builder
	stream.Stdout, stream.Stderr = &streamLog, &streamLog
	if err := stream.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stream.Process.Signal(syscall.SIGTERM); stream.Wait() }()
	c, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		var n int
		c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE usename = 'tidemark'").Scan(&n)
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream never connected as tidemark:\n%s", streamLog.String())
		}
	}
	c.Exec(ctx, "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
	if out, errs, code := run(t, "backup", "--repo", repo, "--source", source, "--fast-checkpoint", "--json"); code != 0 {
		t.Fatalf("backup as tidemark: exit %d\n%s\n%s\nstream log:\n%s", code, out, errs, streamLog.String())
	}
	waitStatus(t, repo, func(st statusView) bool {
		return len(st.Backups) == 1 && len(st.Streams) == 1 && st.Streams[0].Earliest != nil
	},
		func() string { return streamLog.String() })
}

// exitStatus is a finished command's exit code (-1 when it did not exit).
func exitStatus(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}
