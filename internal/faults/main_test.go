package faults

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
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

	"github.com/tidemark/tidemark/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// cli runs the tidemark binary as a user would, with env added to the
// test's environment.
type cli struct {
	t   *testing.T
	bin string
	env []string
}

func newCLI(t *testing.T, env ...string) cli {
	t.Helper()
	return cli{t: t, bin: testenv.TidemarkBinary(t), env: env}
}

func (c cli) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// run runs a command to its end (bounded) and returns its output and exit code.
func (c cli) run(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := c.command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		c.t.Fatalf("tidemark %s: still running after 3 minutes\n%s", strings.Join(args, " "), errb.String())
	}
	if err != nil && cmd.ProcessState == nil {
		c.t.Fatalf("tidemark %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// expect runs a command and fails the test unless it exits with want.
func (c cli) expect(want int, args ...string) (string, string) {
	c.t.Helper()
	out, errs, code := c.run(args...)
	if code != want {
		c.t.Fatalf("tidemark %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errs)
	}
	return out, errs
}

// proc is a tidemark process running in the background.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  *testenv.LockedBuffer
	done chan struct{}
}

func (c cli) start(args ...string) *proc {
	c.t.Helper()
	p := &proc{t: c.t, cmd: c.command(context.Background(), args...), out: &testenv.LockedBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	c.t.Cleanup(func() { p.kill9() })
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill9 kills it as a crash or the OOM killer would.
func (p *proc) kill9() {
	if !p.exited() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// term stops it as an operator would and returns its exit code.
func (p *proc) term() int {
	p.t.Helper()
	if !p.exited() {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		p.kill9()
		p.t.Fatalf("tidemark %s ignored SIGTERM for a minute\n%s", strings.Join(p.cmd.Args[1:], " "), p.out.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

// wait waits for it to exit by itself and returns its exit code.
func (p *proc) wait(limit time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		p.kill9()
		p.t.Fatalf("tidemark %s still running after %s\n%s", strings.Join(p.cmd.Args[1:], " "), limit, p.out.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

// keyFile writes a fresh age identity, readable by the database's OS user
// (restore_command runs as it), and returns its path and public key.
func keyFile(t *testing.T, pg *testenv.Postgres) (string, string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "restore.key")
	if err := os.WriteFile(p, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pg != nil {
		pg.Grant(t, p)
	}
	return p, id.Recipient().String()
}

// load commits rows one by one, as an application would, and remembers
// which commits the server acknowledged.
type load struct {
	mu     sync.Mutex
	acked  map[int64]bool
	cancel context.CancelFunc
	done   chan struct{}
	errs   []error
}

func startLoad(t *testing.T, pg *testenv.Postgres) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE IF NOT EXISTS acked (id bigint PRIMARY KEY, pad text)"); err != nil {
		t.Fatal(err)
	}
	l := &load{acked: map[int64]bool{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer c.Close(context.Background())
		pad := make([]byte, 300)
		for id := int64(1); ctx.Err() == nil; id++ {
			rand.Read(pad)
			_, err := c.Exec(ctx, "INSERT INTO acked VALUES ($1, $2)", id, hex.EncodeToString(pad))
			if err != nil {
				if ctx.Err() == nil {
					l.mu.Lock()
					l.errs = append(l.errs, err)
					l.mu.Unlock()
				}
				return
			}
			l.mu.Lock()
			l.acked[id] = true
			l.mu.Unlock()
		}
	}()
	t.Cleanup(l.stop)
	return l
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// stop ends the load (a commit waiting for its acknowledgment is
// abandoned: it was never acknowledged) and returns what was acknowledged.
func (l *load) stop() {
	l.cancel()
	<-l.done
}

// waitGrowth waits until n more commits were acknowledged.
func (l *load) waitGrowth(t *testing.T, n int, limit time.Duration) {
	t.Helper()
	want := l.count() + n
	for deadline := time.Now().Add(limit); l.count() < want; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			l.mu.Lock()
			errs := l.errs
			l.mu.Unlock()
			t.Fatalf("load stalled at %d acknowledged commits (want %d): %v", l.count(), want, errs)
		}
	}
}

// checkAcked fails unless every acknowledged commit is in the restored
// server's table.
func (l *load) checkAcked(t *testing.T, restored *testenv.Postgres) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, restored.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	testenv.WaitPromoted(t, c)
	rows, err := c.Query(ctx, "SELECT id FROM acked")
	if err != nil {
		t.Fatal(err)
	}
	have := map[int64]bool{}
	for rows.Next() {
		var id int64
		rows.Scan(&id)
		have[id] = true
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var lost []int64
	for id := range l.acked {
		if !have[id] {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged commits lost (e.g. id %d)", len(lost), len(l.acked), lost[0])
	}
	t.Logf("all %d acknowledged commits restored (%d rows)", len(l.acked), len(have))
}

// syncPostgres is a server on which a commit returns only once the
// streamer made its WAL durable in the repository (RPO 0): what the load
// saw acknowledged must survive anything the suite does.
func syncPostgres(t *testing.T) *testenv.Postgres {
	t.Helper()
	return testenv.NewPostgreSQL(t, testenv.PostgresOptions{Conf: []string{"synchronous_standby_names=tidemark", "synchronous_commit=on",
		"wal_sender_timeout=10s"}})
}

// streamArgs are a synchronous streamer's arguments.
func streamArgs(repo string, pg *testenv.Postgres) []string {
	return []string{"stream", "--repo", repo, "--source", pg.URL("postgres"), "--slot", "tidemark", "--create-slot",
		"--synchronous", "--log-level", "warn"}
}

// restoreAndStart restores the latest point into a new directory and
// starts a server on it (replaying WAL through wal-fetch).
func restoreAndStart(t *testing.T, c cli, repo, key string, pg *testenv.Postgres) *testenv.Postgres {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "restored")
	c.expect(0, "restore", "--repo", repo, "--identity-file", key, "--latest", "--target-dir", dir)
	return testenv.NewPostgreSQL(t, testenv.PostgresOptions{DataDir: dir})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustContain(t *testing.T, what, text string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Fatalf("%s lacks %q:\n%s", what, w, text)
		}
	}
}

var _ = fmt.Sprintf
