package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresBinDir is where Debian's postgresql-15 package puts the server
// (and the client tools every major's tests use: psql, pg_verifybackup).
const PostgresBinDir = "/usr/lib/postgresql/15/bin"

// Postgres is a throwaway PostgreSQL server on 127.0.0.1.
type Postgres struct {
	Host    string
	Port    int
	DataDir string
	BinDir  string
	User    string // superuser, allowed to replicate
	Major   int

	dir  string // scratch dir holding the data dir, socket and log
	conf []string
	cred *syscall.Credential
	proc *process
	keep bool // the data dir was given to us: do not delete it
}

// PostgresOptions configure a separate server.
type PostgresOptions struct {
	// Conf lines, "name = value" or "name=value", given on the command line
	// (so they win over a restored postgresql.conf, which stays untouched).
	Conf []string
	// DataDir, when set, is an existing data directory (a restored backup)
	// to start instead of running initdb. It is not deleted on Stop.
	DataDir string
	// Major is the server's major version (0: the data directory's, else
	// DefaultPostgresMajor).
	Major int
}

var sharedPostgres shared[*Postgres]

// PostgreSQL returns the package's shared server, starting it on first use.
func PostgreSQL(t testing.TB) *Postgres {
	t.Helper()
	p, err := sharedPostgres.get(func() (*Postgres, func(), error) {
		p, err := StartPostgres(PostgresOptions{})
		if err != nil {
			return nil, nil, err
		}
		return p, p.Destroy, nil
	})
	if err != nil {
		Unavailable(t, fmt.Sprintf("PostgreSQL %d", DefaultPostgresMajor()), err)
	}
	return p
}

// NewPostgreSQL starts a separate server, destroyed when the test ends.
// Failing to start a given DataDir fails the test: that is the code under
// test (a restore), not a missing server.
func NewPostgreSQL(t testing.TB, o PostgresOptions) *Postgres {
	t.Helper()
	p, err := StartPostgres(o)
	switch {
	case err != nil && o.DataDir != "":
		t.Fatalf("start PostgreSQL on %s: %v", o.DataDir, err)
	case err != nil:
		Unavailable(t, fmt.Sprintf("PostgreSQL %d", o.major()), err)
	}
	t.Cleanup(p.Destroy)
	return p
}

// major is the server to run: the one asked for, else the one that wrote
// a given data directory, else the default.
func (o PostgresOptions) major() int {
	if o.Major != 0 {
		return o.Major
	}
	if o.DataDir != "" {
		if b, err := os.ReadFile(filepath.Join(o.DataDir, "PG_VERSION")); err == nil {
			if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return n
			}
		}
	}
	return DefaultPostgresMajor()
}

// StartPostgres initialises (unless o.DataDir is set) and starts a server.
// The caller owns it: Destroy stops it and removes its files.
func StartPostgres(o PostgresOptions) (*Postgres, error) {
	bin, err := PostgresBin(o.major())
	if err != nil {
		return nil, err
	}
	cred, err := serviceUser("postgres")
	if err != nil {
		return nil, err
	}
	dir, err := tempDir("tidemark-pg-")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	p := &Postgres{Host: "127.0.0.1", Port: port, BinDir: bin, User: "postgres", Major: o.major(),
		dir: dir, conf: o.Conf, cred: cred, DataDir: filepath.Join(dir, "data")}
	if o.DataDir != "" {
		p.DataDir, p.keep = o.DataDir, true
	}
	if err := chownTree(dir, cred); err != nil {
		return nil, err
	}
	if o.DataDir == "" {
		if err := runAs(cred, filepath.Join(bin, "initdb"), "-D", p.DataDir, "-U", "postgres",
			"--auth=trust", "--data-checksums", "-E", "UTF8", "--locale=C"); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("initdb: %w", err)
		}
	} else if err := adoptDataDir(o.DataDir, cred); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := p.Start(); err != nil {
		p.Destroy()
		return nil, err
	}
	return p, nil
}

// Start starts (or restarts) the server on its data directory and port.
func (p *Postgres) Start() error {
	// Settings go on the command line so a restored data directory keeps its
	// own postgresql.conf untouched (restore tests compare it).
	args := []string{"-D", p.DataDir, "-p", fmt.Sprint(p.Port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + p.dir,
		"-c", "wal_level=replica",
		"-c", "max_wal_senders=10",
		"-c", "max_replication_slots=10",
		"-c", "shared_buffers=32MB",
		"-c", "max_connections=40",
		"-c", "log_min_messages=warning",
		"-c", "logging_collector=off",
	}
	for _, c := range p.conf {
		args = append(args, "-c", confArg(c))
	}
	proc, err := startProcess("PostgreSQL", filepath.Join(p.dir, "postgres.log"), p.cred, nil,
		filepath.Join(p.BinDir, "postgres"), args...)
	if err != nil {
		return err
	}
	p.proc = proc
	return proc.waitReady(func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, p.URL("postgres"))
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		var inRecovery bool
		return c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
	})
}

// URL is a connection URL for database db.
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", p.User, p.Host, p.Port, db)
}

// ReplicationURL is a URL for a physical replication connection.
func (p *Postgres) ReplicationURL() string { return p.URL("postgres") + "&replication=true" }

// Stop shuts the server down cleanly (fast shutdown).
func (p *Postgres) Stop() {
	if p.proc != nil {
		p.proc.stop(syscall.SIGINT, 30*time.Second)
	}
}

// Kill ends the server at once, as a crash would.
func (p *Postgres) Kill() {
	if p.proc != nil {
		p.proc.kill()
	}
}

// Destroy stops the server and removes its files.
func (p *Postgres) Destroy() {
	p.Stop()
	os.RemoveAll(p.dir)
}

// SocketDir is the directory of the server's Unix socket.
func (p *Postgres) SocketDir() string { return p.dir }

// Log returns the tail of the server's log.
func (p *Postgres) Log() string { return logTail(filepath.Join(p.dir, "postgres.log"), 50) }

// Exec runs SQL statements in database postgres, failing the test on error.
func (p *Postgres) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		t.Fatalf("connect to PostgreSQL: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", strings.TrimSpace(sql), err)
	}
}

// Grant makes paths usable by the server's OS user (when tests run as
// root, the server runs as postgres): each is given to that user, and its
// parent directories made traversable. For restore_command's repository and
// identity file, and for data directories made by tests.
func (p *Postgres) Grant(t testing.TB, paths ...string) {
	t.Helper()
	for _, path := range paths {
		if err := p.GrantPath(path); err != nil {
			t.Fatal(err)
		}
	}
}

// GrantPath is Grant for one path, outside tests.
func (p *Postgres) GrantPath(path string) error {
	if err := chownTree(path, p.cred); err != nil {
		return err
	}
	// Set-group-ID directories give what a process running as another user
	// (a streamer as root) writes later the server user's group, as a DBA
	// sharing a repository between two users would set it up.
	if p.cred != nil {
		if err := filepath.Walk(path, func(q string, fi os.FileInfo, err error) error {
			if err != nil || !fi.IsDir() {
				return err
			}
			return os.Chmod(q, fi.Mode().Perm()|os.ModeSetgid)
		}); err != nil {
			return err
		}
	}
	for d := filepath.Dir(path); d != "/" && d != "."; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o005 != 0o005 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o005); err != nil {
				return err
			}
		}
	}
	return nil
}

// adoptDataDir readies a given data dir (say, restored into t.TempDir()) for
// the server: owned by its OS user, private, and reachable through parents
// that os.MkdirTemp made 0700.
func adoptDataDir(dir string, cred *syscall.Credential) error {
	if err := chownTree(dir, cred); err != nil {
		return fmt.Errorf("chown data dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil { // PostgreSQL insists
		return fmt.Errorf("chmod data dir: %w", err)
	}
	if cred == nil {
		return nil
	}
	tmp, err := filepath.Abs(os.TempDir())
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	// Only o+x (search), and only below the temp dir.
	for d := filepath.Dir(abs); strings.HasPrefix(d, tmp+string(filepath.Separator)); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
			return fmt.Errorf("make %s traversable: %w", d, err)
		}
	}
	return nil
}

// confArg turns a postgresql.conf line ("name = 'value'") into the
// name=value form -c wants: -c keeps spaces and quotes verbatim.
func confArg(line string) string {
	name, value, ok := strings.Cut(line, "=")
	if !ok {
		return line
	}
	value = strings.TrimSpace(value)
	if len(value) >= 2 && value[0] == '\'' && value[len(value)-1] == '\'' {
		value = strings.ReplaceAll(value[1:len(value)-1], "''", "'")
	}
	return strings.TrimSpace(name) + "=" + value
}

// WaitPromoted waits (bounded) until the server c is connected to has left
// recovery: a restored server replayed its WAL and promoted.
func WaitPromoted(t testing.TB, c *pgx.Conn) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		var rec bool
		if err := c.QueryRow(context.Background(), "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			t.Fatal(err)
		}
		if !rec {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("restored server never finished recovery")
		}
	}
}
