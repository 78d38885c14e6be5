package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/file"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestMySQLBackupRestoreCLI: backup with a password file and --json, then
// restore --latest into a fresh server rolls the base forward through the
// binlog archived by a running streamer; targets before the base and
// existing databases are refused.
func TestMySQLBackupRestoreCLI(t *testing.T) {
	src := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	src.Exec(t, "CREATE USER 'tm'@'127.0.0.1' IDENTIFIED BY 'pw-secret'")
	src.Exec(t, "GRANT ALL ON *.* TO 'tm'@'127.0.0.1'")
	src.Exec(t, "CREATE DATABASE app")
	src.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20))")
	src.Exec(t, "INSERT INTO app.t SELECT seq, CONCAT('v', seq) FROM app.seq_1_to_100")
	dir := t.TempDir()
	repo, pwFile := filepath.Join(dir, "repo"), filepath.Join(dir, "pw")
	key, id := keyFile(t)
	if err := os.WriteFile(pwFile, []byte("pw-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	expect(t, 0, "init", "--repo", repo, "--recipient", id.Recipient().String())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := file.Open(repo)
	if err != nil {
		t.Fatal(err)
	}
	r, err := archive.Open(ctx, s, archive.Keys{})
	if err != nil {
		t.Fatal(err)
	}
	durable := make(chan binlog.Position, 1000)
	done := make(chan error, 1)
	go func() {
		done <- binlog.Stream(ctx, binlog.Config{Repo: r, Source: binlog.Source{Host: src.Host, Port: uint16(src.Port), User: src.User},
			FlushInterval: 50 * time.Millisecond, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			Progress: func(p binlog.Progress) {
				select {
				case durable <- p.Durable:
				default:
				}
			}})
	}()

	source := fmt.Sprintf("mysql://tm@%s/", src.Addr())
	out, _ := expect(t, 0, "backup", "--repo", repo, "--source", source, "--password-file", pwFile, "--jobs", "2", "--json")
	var res struct {
		Backup           string  `json:"backup"`
		Position         string  `json:"position"`
		Rows             int64   `json:"rows"`
		Logical          int64   `json:"logical_bytes"`
		CommitsBlockedMS float64 `json:"commits_blocked_ms"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("backup --json: %v\n%s", err, out)
	}
	if res.Rows != 100 || res.Logical == 0 || !strings.HasPrefix(res.Position, "mysql-bin.") || res.CommitsBlockedMS <= 0 {
		t.Fatalf("backup result %+v", res)
	}
	if strings.Contains(out, "pw-secret") {
		t.Fatal("the password is in the output")
	}
	before := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)

	src.Exec(t, "INSERT INTO app.t VALUES (101, 'after the base')")
	src.Exec(t, "UPDATE app.t SET v = 'changed' WHERE id = 1")
	c, err := src.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Execute("SHOW MASTER STATUS")
	if err != nil {
		t.Fatal(err)
	}
	file, _ := st.GetString(0, 0)
	pos, _ := st.GetInt(0, 1)
	for p := range durable {
		if p.File > file || p.File == file && int64(p.Pos) >= pos {
			break
		}
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}

	dst := testenv.NewMariaDB(t, testenv.MariaDBOptions{ServerID: 2})
	// A target before the oldest base is refused, naming the base.
	if _, errs := expect(t, exitUnreachable, "restore", "--repo", repo, "--identity-file", key, "--target", dst.URL(), "--to-time", before); !strings.Contains(errs, res.Backup) {
		t.Fatalf("restore before the base: %s", errs)
	}
	out, _ = expect(t, 0, "restore", "--repo", repo, "--identity-file", key, "--target", dst.URL(), "--latest", "--jobs", "2")
	if !strings.Contains(out, res.Backup) || !strings.Contains(out, "binlog replayed") {
		t.Fatalf("restore output: %s", out)
	}
	dc, err := dst.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	got, err := dc.Execute("SELECT COUNT(*), SUM(v = 'changed'), MAX(v) FROM app.t")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := got.GetInt(0, 0)
	changed, _ := got.GetInt(0, 1)
	if n != 101 || changed != 1 {
		t.Fatalf("restored app.t: %d rows, %d changed; want 101 and 1", n, changed)
	}
	if _, errs := expect(t, exitTargetHoldsData, "restore", "--repo", repo, "--identity-file", key, "--target", dst.URL(), "--latest"); !strings.Contains(errs, "--force") {
		t.Fatalf("restore over existing databases: %s", errs)
	}
	expect(t, exitUsage, "restore", "--repo", repo, "--identity-file", key, "--target", dst.URL(), "--to-position", "nonsense")
}
