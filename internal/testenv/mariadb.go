package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
)

// MariaDB is a throwaway MariaDB 10.11 server on 127.0.0.1 with binary
// logging (ROW format) on.
type MariaDB struct {
	Host     string
	Port     int
	User     string
	Password string
	ServerID int
	DataDir  string

	dir  string
	args []string
	proc *process
}

// MariaDBOptions configure a separate server.
type MariaDBOptions struct {
	ServerID int      // default 1
	Args     []string // extra mariadbd arguments
	// SkipTestDB leaves out the empty `test` database that
	// mariadb-install-db creates by default. Servers are default installs
	// unless a test says otherwise: restores must work into what users have.
	SkipTestDB bool
}

var sharedMariaDB shared[*MariaDB]

// MariaDBServer returns the package's shared server, starting it on first use.
func MariaDBServer(t testing.TB) *MariaDB {
	t.Helper()
	m, err := sharedMariaDB.get(func() (*MariaDB, func(), error) {
		m, err := StartMariaDB(MariaDBOptions{})
		if err != nil {
			return nil, nil, err
		}
		return m, m.Destroy, nil
	})
	if err != nil {
		Unavailable(t, "MariaDB 10.11", err)
	}
	return m
}

// NewMariaDB starts a separate server, destroyed when the test ends.
func NewMariaDB(t testing.TB, o MariaDBOptions) *MariaDB {
	t.Helper()
	m, err := StartMariaDB(o)
	if err != nil {
		Unavailable(t, "MariaDB 10.11", err)
	}
	t.Cleanup(m.Destroy)
	return m
}

const mariadbd = "/usr/sbin/mariadbd"

// StartMariaDB initialises and starts a server; Destroy removes it.
func StartMariaDB(o MariaDBOptions) (*MariaDB, error) {
	if _, err := os.Stat(mariadbd); err != nil {
		return nil, fmt.Errorf("MariaDB not installed at %s", mariadbd)
	}
	if o.ServerID == 0 {
		o.ServerID = 1
	}
	dir, err := tempDir("tidemark-mariadb-")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	m := &MariaDB{Host: "127.0.0.1", Port: port, User: "root", ServerID: o.ServerID,
		DataDir: filepath.Join(dir, "data"), dir: dir}
	// A temporary directory of its own: in the shared /tmp, concurrent
	// installs were seen to delete each other's temporary tables.
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	install := []string{"--no-defaults", "--datadir=" + m.DataDir, "--auth-root-authentication-method=normal", "--tmpdir=" + tmp}
	if o.SkipTestDB {
		install = append(install, "--skip-test-db")
	}
	if os.Geteuid() == 0 {
		install = append(install, "--user=root")
	}
	if err := runAs(nil, "/usr/bin/mariadb-install-db", install...); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	args := []string{"--no-defaults", "--datadir=" + m.DataDir, "--socket=" + filepath.Join(dir, "mysql.sock"),
		fmt.Sprintf("--port=%d", port), "--bind-address=127.0.0.1", "--skip-name-resolve",
		"--log-bin=mysql-bin", "--binlog-format=ROW", fmt.Sprintf("--server-id=%d", o.ServerID),
		"--pid-file=" + filepath.Join(dir, "mariadb.pid"), "--log-error=" + filepath.Join(dir, "error.log"),
		"--tmpdir=" + tmp, "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=32M", "--max-connections=60"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	m.args = append(args, o.Args...)
	if err := m.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return m, nil
}

// Start starts the server (again, after Stop or Kill) on the same data
// directory and port.
func (m *MariaDB) Start() error {
	proc, err := startProcess("MariaDB", filepath.Join(m.dir, "error.log"), nil, nil, mariadbd, m.args...)
	if err != nil {
		return err
	}
	m.proc = proc
	if err := proc.waitReady(func(ctx context.Context) error {
		c, err := m.Conn()
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Execute("SELECT 1")
		return err
	}); err != nil {
		m.Stop()
		return err
	}
	return nil
}

// Addr is host:port.
func (m *MariaDB) Addr() string { return fmt.Sprintf("%s:%d", m.Host, m.Port) }

// URL is a mysql:// URL for the server.
func (m *MariaDB) URL() string { return fmt.Sprintf("mysql://%s@%s/", m.User, m.Addr()) }

// Conn opens a client connection as the superuser.
func (m *MariaDB) Conn() (*client.Conn, error) {
	return client.ConnectWithTimeout(m.Addr(), m.User, m.Password, "", 30*time.Second)
}

// Exec runs one statement, failing the test on error.
func (m *MariaDB) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	c, err := m.Conn()
	if err != nil {
		t.Fatalf("connect to MariaDB: %v", err)
	}
	defer c.Close()
	if _, err := c.Execute(sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// BinlogEnd returns the server's current binlog file and end offset
// (SHOW MASTER STATUS).
func (m *MariaDB) BinlogEnd(t testing.TB) (file string, pos uint32) {
	t.Helper()
	c, err := m.Conn()
	if err != nil {
		t.Fatalf("connect to MariaDB: %v", err)
	}
	defer c.Close()
	r, err := c.Execute("SHOW MASTER STATUS")
	if err != nil {
		t.Fatalf("SHOW MASTER STATUS: %v", err)
	}
	file, _ = r.GetString(0, 0)
	n, _ := r.GetInt(0, 1)
	return file, uint32(n)
}

// Stop shuts the server down cleanly.
func (m *MariaDB) Stop() {
	if m.proc != nil {
		m.proc.stop(syscall.SIGTERM, 30*time.Second)
	}
}

// Kill ends the server at once, as a crash would.
func (m *MariaDB) Kill() {
	if m.proc != nil {
		m.proc.kill()
	}
}

// Destroy stops the server and removes its files.
func (m *MariaDB) Destroy() {
	m.Stop()
	os.RemoveAll(m.dir)
}

// ReplicateFrom makes m a GTID replica of primary (CHANGE MASTER ...
// MASTER_USE_GTID=slave_pos) and starts replication.
func (m *MariaDB) ReplicateFrom(t testing.TB, primary *MariaDB) {
	t.Helper()
	m.Exec(t, fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='%s', MASTER_PORT=%d, MASTER_USER='%s', MASTER_PASSWORD='%s', MASTER_USE_GTID=slave_pos",
		primary.Host, primary.Port, primary.User, primary.Password))
	m.Exec(t, "START SLAVE")
}

// CatchUp waits until m has applied everything primary has in its binlog.
func (m *MariaDB) CatchUp(t testing.TB, primary *MariaDB) {
	t.Helper()
	pc, err := primary.Conn()
	if err != nil {
		t.Fatalf("connect to the primary: %v", err)
	}
	defer pc.Close()
	r, err := pc.Execute("SELECT @@gtid_binlog_pos")
	if err != nil {
		t.Fatalf("read the primary's GTID position: %v", err)
	}
	pos, _ := r.GetString(0, 0)
	c, err := m.Conn()
	if err != nil {
		t.Fatalf("connect to the replica: %v", err)
	}
	defer c.Close()
	r, err = c.Execute("SELECT MASTER_GTID_WAIT(?, 60)", pos)
	if err != nil {
		t.Fatalf("MASTER_GTID_WAIT(%s): %v", pos, err)
	}
	if n, _ := r.GetInt(0, 0); n != 0 {
		st, _ := c.Execute("SHOW SLAVE STATUS")
		var why string
		if st != nil && st.RowNumber() > 0 {
			why, _ = st.GetStringByName(0, "Last_Error")
			if io, _ := st.GetStringByName(0, "Last_IO_Error"); io != "" {
				why += " " + io
			}
		}
		t.Fatalf("the replica did not reach the primary's %s within 60s: %s", pos, why)
	}
}

// Promote turns a replica into a primary: replication stopped and
// forgotten, writes allowed.
func (m *MariaDB) Promote(t testing.TB) {
	t.Helper()
	for _, q := range []string{"STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only = OFF"} {
		m.Exec(t, q)
	}
}
