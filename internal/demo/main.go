// Command demo is `make demo`: Tidemark's main job on an embedded default,
// with nothing to configure. A throwaway PostgreSQL is streamed and backed
// up into a fresh age-encrypted repository; rows are written, a moment is
// remembered, a mistake is made; the repository is restored to that moment
// into a new directory, the restored server is started, and its rows are
// compared with what was seen at the moment. Every step runs the real
// tidemark binary and is printed plainly.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/restore"
	pgrestore "github.com/tidemark/tidemark/restore/postgres"
)

// main runs the demo with the tidemark binary named by its argument
// (`make demo` builds bin/tidemark-demo), else bin/tidemark.
func main() {
	path := "bin/tidemark"
	if len(os.Args) > 1 {
		path = os.Args[1]
	}
	bin, err := filepath.Abs(path)
	if err == nil {
		err = run(context.Background(), bin)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

type demo struct {
	bin, work, repo, key string
	pg                   *testenv.Postgres
	conn                 *pgx.Conn
}

// run runs the demo with the tidemark binary at bin.
func run(ctx context.Context, bin string) error {
	defer testenv.StopAll()
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s missing: run `make demo` (or `make build`) first", bin)
	}
	work, err := os.MkdirTemp("", "tidemark-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	d := &demo{bin: bin, work: work, repo: filepath.Join(work, "repo"), key: filepath.Join(work, "restore.key")}

	step("start a throwaway PostgreSQL 15 on 127.0.0.1")
	if d.pg, err = testenv.StartPostgres(testenv.PostgresOptions{}); err != nil {
		return fmt.Errorf("start PostgreSQL (run `make deps`): %w", err)
	}
	defer d.pg.Destroy()
	fmt.Printf("port %d, data directory %s\n", d.pg.Port, d.pg.DataDir)
	if d.conn, err = pgx.Connect(ctx, d.pg.URL("postgres")); err != nil {
		return err
	}
	defer d.conn.Close(ctx)

	step("create an age key; the database host gets only the public key")
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	if err := os.WriteFile(d.key, []byte(id.String()+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Printf("public key %s\nidentity   %s (never in the repository)\n", id.Recipient(), d.key)
	if err := d.tidemark("init", "--repo", d.repo, "--recipient", id.Recipient().String()); err != nil {
		return err
	}

	step("tidemark stream: continuous WAL archiving from a replication slot")
	streamLog := filepath.Join(work, "stream.log")
	stream, err := d.start(streamLog, "stream", "--repo", d.repo, "--source", d.pg.URL("postgres"), "--slot", "tidemark", "--create-slot")
	if err != nil {
		return err
	}
	defer stop(stream)
	fmt.Printf("streaming in the background (log: %s)\n", streamLog)

	step("write 10,000 orders, then take a base backup")
	if err := d.exec("CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric(10,2), at timestamptz DEFAULT now())",
		"INSERT INTO orders (id, customer, amount) SELECT g, 'customer ' || (g % 97), round((random() * 500)::numeric, 2) FROM generate_series(1, 10000) g"); err != nil {
		return err
	}
	if err := d.tidemark("backup", "--repo", d.repo, "--source", d.pg.URL("postgres"), "--fast-checkpoint"); err != nil {
		return err
	}

	step("more writes after the backup, then remember this moment")
	if err := d.exec("INSERT INTO orders (id, customer, amount) SELECT g, 'late ' || g, 9.99 FROM generate_series(10001, 12500) g"); err != nil {
		return err
	}
	time.Sleep(50 * time.Millisecond)
	moment := time.Now()
	time.Sleep(50 * time.Millisecond)
	seen, err := d.fingerprint(d.conn)
	if err != nil {
		return err
	}
	fmt.Printf("moment  %s\ntable   %s\n", pgrestore.FormatTime(moment), seen)

	step("the mistake: half the orders deleted")
	mistakeAt := time.Now()
	if err := d.exec("DELETE FROM orders WHERE id % 2 = 0"); err != nil {
		return err
	}
	rpo, err := d.waitArchived(ctx, mistakeAt)
	if err != nil {
		return err
	}
	fmt.Printf("the mistake itself is in the repository %s after its commit (achieved RPO)\n", rpo.Round(time.Millisecond))
	if err := d.tidemark("status", "--repo", d.repo); err != nil {
		return err
	}

	step("tidemark restore --to-time '%s' --start: restore into a new directory, replay WAL from the repository to the moment, promote", pgrestore.FormatTime(moment))
	// The restored server runs restore_command (tidemark wal-fetch) as its
	// own OS user: the repository must be readable by it. tidemark itself
	// and the key file are copied beside the data directory when that user
	// cannot reach them (a checkout in a private home directory).
	if err := d.pg.GrantPath(d.repo); err != nil {
		return err
	}
	target := filepath.Join(work, "restored")
	port, err := testenv.FreePort()
	if err != nil {
		return err
	}
	restoreStart := time.Now()
	if err := d.tidemark("restore", "--repo", d.repo, "--identity-file", d.key, "--to-time", pgrestore.FormatTime(moment),
		"--target-dir", target, "--start", "--port", fmt.Sprint(port)); err != nil {
		return err
	}
	as, err := serverUser()
	if err != nil {
		return err
	}
	defer pgrestore.StopRestored(context.WithoutCancel(ctx), target, testenv.PostgresBinDir, as)
	rc, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port))
	if err != nil {
		return err
	}
	defer rc.Close(ctx)
	if err := waitPromoted(ctx, rc); err != nil {
		return err
	}
	rto := time.Since(restoreStart)
	got, err := d.fingerprint(rc)
	if err != nil {
		return err
	}
	fmt.Printf("restored table  %s\nremembered      %s\n", got, seen)
	if got != seen {
		return errors.New("the restored table differs from what was seen at the moment")
	}

	step("a flipped byte in the repository is never silent: tidemark verify names it and exits 3")
	if err := flipOneChunk(d.repo); err != nil {
		return err
	}
	if err := d.expectExit(3, "verify", "--repo", d.repo, "--identity-file", d.key); err != nil {
		return err
	}

	fmt.Printf("\nDemo complete.\n  recovered point  %s (rows identical to what was seen then)\n  RPO              %s (the newest commit was archived that soon)\n  restore time     %s (restore + WAL replay + promotion)\n",
		pgrestore.FormatTime(moment), rpo.Round(time.Millisecond), rto.Round(time.Millisecond))
	return nil
}

// serverUser is the OS user the restored server runs as: postgres when
// the demo runs as root (restore's default --run-as), else the demo's own.
func serverUser() (*restore.OSUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	return restore.LookupOSUser("postgres")
}

func (d *demo) exec(sqls ...string) error {
	for _, s := range sqls {
		if _, err := d.conn.Exec(context.Background(), s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// fingerprint is a row count and a checksum of every row.
func (d *demo) fingerprint(c *pgx.Conn) (string, error) {
	var n int
	var sum string
	err := c.QueryRow(context.Background(), "SELECT count(*), md5(string_agg(id || ':' || customer || ':' || amount, ',' ORDER BY id)) FROM orders").Scan(&n, &sum)
	return fmt.Sprintf("%d rows, md5 %s", n, sum), err
}

// waitArchived waits until the repository holds the server's current WAL and
// returns how long after since that took.
func (d *demo) waitArchived(ctx context.Context, since time.Time) (time.Duration, error) {
	var cur string
	if err := d.conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&cur); err != nil {
		return 0, err
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var ok bool
		err := d.conn.QueryRow(ctx, "SELECT flush_lsn >= $1::pg_lsn FROM pg_stat_replication WHERE application_name = 'tidemark'", cur).Scan(&ok)
		if err == nil && ok {
			return time.Since(since), nil
		}
	}
	return 0, errors.New("the streamer did not archive the newest WAL within a minute")
}

func waitPromoted(ctx context.Context, c *pgx.Conn) error {
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var rec bool
		if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			return err
		}
		if !rec {
			return nil
		}
	}
	return errors.New("the restored server did not finish recovery")
}

// shown is the command line as a user would type it.
func shown(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if strings.ContainsAny(a, " ?&") {
			out[i] = "'" + a + "'"
		}
	}
	return strings.Join(out, " ")
}

func (d *demo) tidemark(args ...string) error {
	fmt.Printf("$ tidemark %s\n", shown(args))
	cmd := exec.Command(d.bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("tidemark %s: %w", args[0], err)
	}
	return nil
}

func (d *demo) expectExit(code int, args ...string) error {
	fmt.Printf("$ tidemark %s\n", shown(args))
	cmd := exec.Command(d.bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != code {
		return fmt.Errorf("tidemark %s: want exit %d, got %v", args[0], code, err)
	}
	fmt.Printf("(exit %d, as it should)\n", code)
	return nil
}

func (d *demo) start(logPath string, args ...string) (*exec.Cmd, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(d.bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd, cmd.Start()
}

func stop(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

// flipOneChunk flips a byte in the middle of a pack of chunks: inside one
// chunk object, whose checksum and authentication then fail.
func flipOneChunk(repo string) error {
	var victim string
	filepath.WalkDir(filepath.Join(repo, "packs"), func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() && victim == "" {
			victim = p
		}
		return err
	})
	if victim == "" {
		return errors.New("no chunk to corrupt")
	}
	b, err := os.ReadFile(victim)
	if err != nil {
		return err
	}
	b[len(b)/2] ^= 0x40
	return os.WriteFile(victim, b, 0o600)
}
