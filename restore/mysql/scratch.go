package mysql

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/restore"
)

// startScratchMariaDB initialises a data directory and starts mariadbd on a
// free loopback port. Before it accepts connections, an init file removes
// root's TCP accounts and creates the drill account with a random password:
// other local users cannot read the restored data.
func startScratchMariaDB(ctx context.Context, dir string, cfg DrillConfig) (binlog.Source, func(), error) {
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
		} else if u, err := restore.LookupOSUser(name); err == nil {
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
	port, err := restore.FreePort()
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

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
