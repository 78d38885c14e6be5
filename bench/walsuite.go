package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/internal/testenv"
)

// walSuite: archive lag under pgbench for tidemark stream, pg_receivewal
// --slot and archive_command (pgBackRest archive-push), and pgbench TPS
// without archiving, with each, and with tidemark in synchronous mode.
//
// Lag is measured the same way for all three from the server's side:
// every 100 ms the current WAL position and each method's archived
// position (tidemark and pg_receivewal: the flush position they report in
// pg_stat_replication; archive_command: the end of pg_stat_archiver's
// last_archived_wal) are sampled. Byte lag is their difference; time lag is
// how long ago the server's position passed the archived one.
func walSuite(ctx context.Context, dir string, scale int, dur time.Duration) error {
	bin, err := filepath.Abs("bin/tidemark")
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s missing: run `make build`", bin)
	}
	pg, err := testenv.StartPostgres(testenv.PostgresOptions{Conf: []string{"max_wal_size=2GB", "checkpoint_timeout=5min", "archive_mode=on",
		"wal_sender_timeout=60s"}})
	if err != nil {
		return err
	}
	defer pg.Destroy()
	url := pg.URL("postgres")
	fmt.Printf("\nwal suite: pgbench -c 4 -j 2, scale %d, %s per phase; lag sampled every 100 ms\n", scale, dur)
	if out, err := exec.CommandContext(ctx, "pgbench", "-i", "-q", "-s", strconv.Itoa(scale), url).CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	exec1 := func(sql string) error { _, err := conn.Exec(ctx, sql); return err }
	// archive_command lives in postgresql.auto.conf (a -c setting would
	// override ALTER SYSTEM): a no-op until the pgBackRest phase.
	if err := exec1("ALTER SYSTEM SET archive_command = '/bin/true'"); err != nil {
		return err
	}
	exec1("SELECT pg_reload_conf()")

	type phase struct {
		name  string
		start func() (stop func(), err error)
		pos   string // SQL giving the archived position
	}
	repoDir := filepath.Join(dir, "wal-repo")
	stream := func(extra ...string) func() (func(), error) {
		return func() (func(), error) {
			os.RemoveAll(repoDir)
			if out, err := exec.Command(bin, "init", "--repo", repoDir, "--no-encryption").CombinedOutput(); err != nil {
				return nil, fmt.Errorf("tidemark init: %v %s", err, out)
			}
			exec1("SELECT pg_drop_replication_slot('tidemark') FROM pg_replication_slots WHERE slot_name = 'tidemark'")
			args := append([]string{"stream", "--repo", repoDir, "--source", url, "--slot", "tidemark", "--create-slot", "--log-level", "warn"}, extra...)
			return startDaemon(exec.Command(bin, args...))
		}
	}
	recvDir := filepath.Join(dir, "receivewal")
	receivewal := func() (func(), error) {
		os.RemoveAll(recvDir)
		os.MkdirAll(recvDir, 0o700)
		exec1("SELECT pg_drop_replication_slot('recv') FROM pg_replication_slots WHERE slot_name = 'recv'")
		if out, err := exec.Command("pg_receivewal", "--create-slot", "--slot", "recv", "-d", url).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("pg_receivewal --create-slot: %v %s", err, out)
		}
		return startDaemon(exec.Command("pg_receivewal", "-D", recvDir, "--slot", "recv", "-d", url, "--no-loop"))
	}
	pgbr, err := setupPgBackRest(ctx, pg, dir)
	if err != nil {
		return err
	}
	archiveCmd := func() (func(), error) {
		if err := exec1(fmt.Sprintf("ALTER SYSTEM SET archive_command = '%s'", pgbr)); err != nil {
			return nil, err
		}
		if err := exec1("SELECT pg_reload_conf()"); err != nil {
			return nil, err
		}
		return func() {
			exec1("ALTER SYSTEM SET archive_command = '/bin/true'")
			exec1("SELECT pg_reload_conf()")
		}, nil
	}
	syncOn := func() (func(), error) {
		stop, err := stream("--synchronous")()
		if err != nil {
			return nil, err
		}
		exec1("ALTER SYSTEM SET synchronous_standby_names = 'tidemark'")
		exec1("SELECT pg_reload_conf()")
		return func() {
			exec1("ALTER SYSTEM RESET synchronous_standby_names")
			exec1("SELECT pg_reload_conf()")
			stop()
		}, nil
	}
	replPos := func(app string) string {
		return fmt.Sprintf("SELECT flush_lsn::text FROM pg_stat_replication WHERE application_name = '%s'", app)
	}
	archPos := "SELECT last_archived_wal FROM pg_stat_archiver"
	phases := []phase{
		{"no archiving", func() (func(), error) { return func() {}, nil }, ""},
		{"tidemark stream", stream(), replPos("tidemark")},
		{"pg_receivewal --slot", receivewal, replPos("pg_receivewal")},
		{"archive_command (pgBackRest)", archiveCmd, archPos},
		{"tidemark --synchronous", syncOn, replPos("tidemark")},
	}
	fmt.Printf("\n%-30s %8s %12s %12s %12s %10s %10s %10s\n", "phase", "TPS", "lag p50", "lag p99", "lag max", "p50 s", "p99 s", "max s")
	for _, ph := range phases {
		stop, err := ph.start()
		if err != nil {
			return fmt.Errorf("%s: %w", ph.name, err)
		}
		time.Sleep(2 * time.Second) // let it connect and catch up
		samples := make(chan []lagSample, 1)
		sctx, cancel := context.WithCancel(ctx)
		go func() { samples <- sampleLag(sctx, url, ph.pos) }()
		tps, err := runPgbench(ctx, url, dur)
		cancel()
		lags := <-samples
		stop()
		if err != nil {
			return fmt.Errorf("%s: %w", ph.name, err)
		}
		if ph.pos == "" {
			fmt.Printf("%-30s %8.0f %12s %12s %12s %10s %10s %10s\n", ph.name, tps, "-", "-", "-", "-", "-", "-")
			continue
		}
		b, s := summarize(lags)
		fmt.Printf("%-30s %8.0f %12s %12s %12s %10.2f %10.2f %10.2f\n", ph.name, tps,
			kib(b[0]), kib(b[1]), kib(b[2]), s[0], s[1], s[2])
	}
	fmt.Println("\nlag: how far the archived position trails the server's WAL (bytes; seconds since the server wrote it)")
	return nil
}

func kib(n float64) string { return fmt.Sprintf("%.0f KiB", n/1024) }

func startDaemon(cmd *exec.Cmd) (func(), error) {
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}, nil
}

var tpsLine = regexp.MustCompile(`tps = ([0-9.]+)`)

func runPgbench(ctx context.Context, url string, dur time.Duration) (float64, error) {
	out, err := exec.CommandContext(ctx, "pgbench", "-c", "4", "-j", "2", "-n", "-T", strconv.Itoa(int(dur.Seconds())), url).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench: %v\n%s", err, out)
	}
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench printed no tps:\n%s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

type lagSample struct {
	at       time.Time
	current  pglogrepl.LSN
	archived pglogrepl.LSN
}

func sampleLag(ctx context.Context, url, posSQL string) []lagSample {
	if posSQL == "" {
		<-ctx.Done()
		return nil
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		return nil
	}
	defer conn.Close(context.Background())
	var out []lagSample
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return out
		case <-t.C:
		}
		var cur, pos *string
		if err := conn.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&cur); err != nil || cur == nil {
			continue
		}
		if err := conn.QueryRow(context.Background(), posSQL).Scan(&pos); err != nil || pos == nil {
			continue
		}
		c, _ := pglogrepl.ParseLSN(*cur)
		var a pglogrepl.LSN
		if strings.Contains(*pos, "/") {
			a, _ = pglogrepl.ParseLSN(*pos)
		} else if len(*pos) == 24 { // a WAL file name: archived up to its end
			hi, _ := strconv.ParseUint((*pos)[8:16], 16, 32)
			lo, _ := strconv.ParseUint((*pos)[16:], 16, 32)
			a = pglogrepl.LSN((hi*256 + lo + 1) * (16 << 20))
		}
		out = append(out, lagSample{time.Now(), c, a})
	}
}

// summarize returns p50/p99/max of byte lag and of time lag.
func summarize(s []lagSample) (bytes, secs [3]float64) {
	if len(s) == 0 {
		return
	}
	var bl, tl []float64
	for i, x := range s {
		lag := float64(0)
		if x.current > x.archived {
			lag = float64(x.current - x.archived)
		}
		bl = append(bl, lag)
		// The first earlier sample whose server position passed x.archived:
		// the WAL at the archived position is at most that old.
		age := 0.0
		if x.archived < x.current {
			age = x.at.Sub(s[0].at).Seconds()
			for j := i; j >= 0; j-- {
				if s[j].current <= x.archived {
					age = x.at.Sub(s[j].at).Seconds()
					break
				}
			}
		}
		tl = append(tl, age)
	}
	return pct(bl), pct(tl)
}

func pct(v []float64) [3]float64 {
	sort.Float64s(v)
	at := func(p float64) float64 { return v[min(len(v)-1, int(p*float64(len(v))))] }
	return [3]float64{at(0.50), at(0.99), v[len(v)-1]}
}

// setupPgBackRest configures a pgBackRest stanza for pg and returns the
// archive_command that pushes to it. pgBackRest runs as the server's OS user.
func setupPgBackRest(ctx context.Context, pg *testenv.Postgres, dir string) (string, error) {
	base := filepath.Join(dir, "pgbackrest")
	for _, d := range []string{"repo", "log", "lock", "spool"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			return "", err
		}
	}
	conf := filepath.Join(base, "pgbackrest.conf")
	text := fmt.Sprintf(`[global]
repo1-path=%s/repo
log-path=%s/log
lock-path=%s/lock
spool-path=%s/spool
compress-type=zst
compress-level=1
log-level-console=warn
log-level-file=off
start-fast=y

[bench]
pg1-path=%s
pg1-port=%d
pg1-socket-path=%s
`, base, base, base, base, pg.DataDir, pg.Port, pg.SocketDir())
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return "", err
	}
	pg.GrantPath(base)
	cmd := asServerUser("pgbackrest", "--config="+conf, "--stanza=bench", "stanza-create")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("pgbackrest stanza-create: %v\n%s", err, out)
	}
	return fmt.Sprintf("pgbackrest --config=%s --stanza=bench archive-push %%p", conf), nil
}

// asServerUser runs a command as the postgres OS user when we are root.
func asServerUser(name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}
