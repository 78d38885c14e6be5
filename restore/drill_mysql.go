package restore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/binlog"
)

// MySQLDrillConfig configures a MySQL/MariaDB drill: a throwaway MariaDB on
// a free loopback port, restored into, checked, thrown away.
type MySQLDrillConfig struct {
	Repo    *archive.Repository
	To      binlog.Target
	WorkDir string  // parent of the scratch directory (default: the temp dir)
	As      *OSUser // the server's OS user when running as root (mariadbd --user)
	BinDir  string  // where mariadbd is (default /usr/sbin; mariadb-install-db from /usr/bin)
	Jobs    int
	Log     *slog.Logger
}

// drillAccount is the scratch server's only TCP account; its password is
// random per drill and never leaves this process and a 0600 init file.
const drillAccount = "tidemark_drill"

// DrillMySQL restores into a scratch server, runs CHECK TABLE on every
// table and counts its rows. An error means the drill could not run.
func DrillMySQL(ctx context.Context, cfg MySQLDrillConfig) (*DrillReport, error) {
	rep := &DrillReport{Job: "drill", Engine: "mysql", Started: time.Now().UTC(), Target: cfg.To.String()}
	cfg.Log = orDiscard(cfg.Log)
	scratch, err := os.MkdirTemp(cfg.WorkDir, "tidemark-drill-")
	if err != nil {
		return rep, fmt.Errorf("drill: scratch directory: %w", err)
	}
	defer os.RemoveAll(scratch)
	srv, stop, err := startScratchMariaDB(ctx, scratch, cfg)
	if err != nil {
		return rep, fmt.Errorf("drill: scratch MariaDB: %w", err)
	}
	defer stop()
	restoreStart := time.Now()
	res, err := RestoreMySQL(ctx, MySQLConfig{Repo: cfg.Repo, Target: fmt.Sprintf("mysql://%s@%s/", drillAccount, srv.Addr()),
		Password: srv.Password, To: cfg.To, Jobs: max(cfg.Jobs, 1), Log: cfg.Log})
	if res != nil && res.Plan != nil {
		rep.Backup = res.Plan.Backup.ID
	}
	if err != nil {
		return rep, fmt.Errorf("drill: %w", err)
	}
	rep.RestoreSeconds = res.LoadTime.Seconds()
	rep.RecoverySeconds = res.ReplayTime.Seconds()
	rep.RTOSeconds = time.Since(restoreStart).Seconds()
	if err := checkMySQLTables(ctx, srv, rep, cfg.Log); err != nil {
		return rep, fmt.Errorf("drill: checks: %w", err)
	}
	rep.OK = rep.Problems == 0
	return rep, nil
}

// startScratchMariaDB initialises a data directory and starts mariadbd on a
// free loopback port. Before it accepts connections, an init file removes
// root's TCP accounts and creates the drill account with a random password:
// other local users cannot read the restored data.
func startScratchMariaDB(ctx context.Context, dir string, cfg MySQLDrillConfig) (binlog.Source, func(), error) {
	var none binlog.Source
	bin := cfg.BinDir
	if bin == "" {
		bin = "/usr/sbin"
	}
	data := filepath.Join(dir, "data")
	userArgs := []string{}
	if os.Geteuid() == 0 {
		name := "mysql"
		if cfg.As != nil {
			name = cfg.As.Name
		}
		userArgs = append(userArgs, "--user="+name)
		if cfg.As != nil {
			if err := cfg.As.Chown(dir); err != nil {
				return none, nil, err
			}
		} else if u, err := LookupOSUser(name); err == nil {
			if err := u.Chown(dir); err != nil {
				return none, nil, err
			}
		}
	}
	install := exec.CommandContext(ctx, "/usr/bin/mariadb-install-db", append([]string{"--no-defaults", "--datadir=" + data,
		"--auth-root-authentication-method=socket", "--skip-test-db"}, userArgs...)...)
	if out, err := install.CombinedOutput(); err != nil {
		return none, nil, fmt.Errorf("mariadb-install-db: %v: %s", err, out)
	}
	var pw [16]byte
	rand.Read(pw[:])
	password := hex.EncodeToString(pw[:])
	initFile := filepath.Join(dir, "init.sql")
	initSQL := fmt.Sprintf("DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1';\n"+
		"CREATE USER '%[1]s'@'127.0.0.1' IDENTIFIED BY '%[2]s';\nGRANT ALL PRIVILEGES ON *.* TO '%[1]s'@'127.0.0.1' WITH GRANT OPTION;\n",
		drillAccount, password)
	if err := os.WriteFile(initFile, []byte(initSQL), 0o600); err != nil {
		return none, nil, err
	}
	if cfg.As != nil && os.Geteuid() == 0 {
		os.Chown(initFile, int(cfg.As.UID), int(cfg.As.GID))
	}
	port, err := freePort()
	if err != nil {
		return none, nil, err
	}
	logFile := filepath.Join(dir, "error.log")
	args := append([]string{"--no-defaults", "--datadir=" + data, "--socket=" + filepath.Join(dir, "mysql.sock"),
		"--port=" + strconv.Itoa(port), "--bind-address=127.0.0.1", "--skip-name-resolve", "--init-file=" + initFile,
		"--pid-file=" + filepath.Join(dir, "mariadb.pid"), "--log-error=" + logFile, "--skip-log-bin"}, userArgs...)
	cmd := exec.Command(filepath.Join(bin, "mariadbd"), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return none, nil, fmt.Errorf("start mariadbd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-exited
		}
	}
	srv := binlog.Source{Host: "127.0.0.1", Port: uint16(port), User: drillAccount, Password: password}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		c, err := client.Connect(srv.Addr(), srv.User, srv.Password, "")
		if err == nil {
			c.Close()
			os.Remove(initFile)
			return srv, stop, nil
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logFile)
			return none, nil, fmt.Errorf("mariadbd exited (%v): %s", err, tailBytes(b, 2000))
		case <-ctx.Done():
			stop()
			return none, nil, ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return none, nil, fmt.Errorf("mariadbd did not accept connections within 2 minutes: %v", err)
		}
	}
}

// checkMySQLTables runs CHECK TABLE and counts rows in every user table.
func checkMySQLTables(ctx context.Context, srv binlog.Source, rep *DrillReport, log *slog.Logger) error {
	c, err := client.Connect(srv.Addr(), srv.User, srv.Password, "")
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := c.Execute(`SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE'
		AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1, 2`)
	if err != nil {
		return err
	}
	dbs := map[string]bool{}
	for i := range r.RowNumber() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		db, _ := r.GetString(i, 0)
		tbl, _ := r.GetString(i, 1)
		dbs[db] = true
		rep.Tables++
		name := quoteIdent(db) + "." + quoteIdent(tbl)
		chk, err := c.Execute("CHECK TABLE " + name + " EXTENDED")
		if err != nil {
			return fmt.Errorf("check %s: %w", name, err)
		}
		for j := range chk.RowNumber() {
			typ, _ := chk.GetString(j, 2)
			text, _ := chk.GetString(j, 3)
			if typ == "error" || (typ == "status" && text != "OK") {
				rep.Problems++
				log.Error("drill: CHECK TABLE found a problem", "table", db+"."+tbl, "type", typ, "message", text)
			}
		}
		cnt, err := c.Execute("SELECT COUNT(*) FROM " + name)
		if err != nil {
			return fmt.Errorf("count %s: %w", name, err)
		}
		n, _ := cnt.GetInt(0, 0)
		rep.Rows += n
		log.Info("drill: table", "table", db+"."+tbl, "rows", n)
	}
	rep.Databases = len(dbs)
	rep.IndexesChecked = rep.Tables // CHECK TABLE EXTENDED checks each table's indexes against its rows
	return nil
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
