package main

import (
	"bytes"
	"context"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/internal/engine/all"
	myengine "github.com/tidemark/tidemark/internal/engine/mysql"
	"github.com/tidemark/tidemark/internal/jobs"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestStreamMySQL: the real binary streams a MariaDB binlog; a second
// streamer is refused by the lock (exit 9); SIGTERM stops it cleanly after
// a final flush; status and verify see the archived range; after a purge
// of the binlog it must continue from, the next stream exits 6 and the gap
// is recorded.
func TestStreamMySQL(t *testing.T) {
	db := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	bin := testenv.TidemarkBinary(t)
	repo := filepath.Join(t.TempDir(), "repo")
	keyPath, id := keyFile(t)
	expect(t, 0, "init", "--repo", repo, "--recipient", id.Recipient().String())
	c, err := db.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, q := range []string{"CREATE DATABASE d", "CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(10))", "INSERT INTO d.t VALUES (1, 'a')"} {
		if _, err := c.Execute(q); err != nil {
			t.Fatal(err)
		}
	}
	var stderr bytes.Buffer
	stream := exec.Command(bin, "stream", "--repo", repo, "--source", db.URL(), "--flush-interval", "100ms")
	stream.Stderr = &stderr
	if err := stream.Start(); err != nil {
		t.Fatal(err)
	}
	defer stream.Process.Kill()
	r := openRepo(t, repo, keyPath)
	waitArchived(t, r, db)
	if _, errs := expect(t, exitLocked, "stream", "--repo", repo, "--source", db.URL()); !strings.Contains(errs, "MySQL/MariaDB binlog") {
		t.Fatalf("second streamer: %s", errs)
	}
	if _, err := c.Execute("INSERT INTO d.t VALUES (2, 'b')"); err != nil {
		t.Fatal(err)
	}
	waitArchived(t, r, db)
	stream.Process.Signal(syscall.SIGTERM)
	if err := stream.Wait(); err != nil {
		t.Fatalf("streamer on SIGTERM: %v\n%s", err, stderr.String())
	}
	sts, err := mysqlStatus(context.Background(), r)
	if err != nil || len(sts) != 1 || len(sts[0].Breaks) != 0 || sts[0].EndGTID != "0-1-4" || sts[0].Files[0] != "mysql-bin.000001" {
		t.Fatalf("status: %+v, %v", sts, err)
	}
	if problems, err := myengine.New().Verify(context.Background(), r); err != nil || len(problems) != 0 {
		t.Fatalf("verify: %v %v", problems, err)
	}
	for _, q := range []string{"INSERT INTO d.t VALUES (3, 'c')", "FLUSH BINARY LOGS"} {
		if _, err := c.Execute(q); err != nil {
			t.Fatal(err)
		}
	}
	file, _ := db.BinlogEnd(t)
	purgeTo(t, c, file)
	if _, errs := expect(t, exitGap, "stream", "--repo", repo, "--source", db.URL()); !strings.Contains(errs, "purged") {
		t.Fatalf("stream after purge: %s", errs)
	}
	gaps, err := r.Gaps(context.Background())
	if err != nil || len(gaps) != 1 || gaps[0].Engine != "mysql" {
		t.Fatalf("gaps: %+v %v", gaps, err)
	}
}

func openRepo(t *testing.T, repo, keyPath string) *archive.Repository {
	t.Helper()
	rf := repoFlags{repo: repo, identityFile: keyPath}
	r, err := rf.open(context.Background(), true, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitArchived waits until the archive holds the server's binlog up to its
// current end.
func waitArchived(t *testing.T, r *archive.Repository, db *testenv.MariaDB) {
	t.Helper()
	file, pos := db.BinlogEnd(t)
	want := binlog.Position{File: file, Pos: pos}.String()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		sts, err := mysqlStatus(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		if len(sts) == 1 {
			if p, err := binlog.ParsePosition(sts[0].End); err == nil && p.File == file && p.Pos >= pos {
				return
			}
		}
	}
	t.Fatalf("archive did not reach %s", want)
}

// purgeTo purges the binlogs before file. MariaDB keeps a file until its
// binlog checkpoint passed it (crash recovery may need it) and says so only
// in a note, so retry until the file is gone.
func purgeTo(t *testing.T, c *client.Conn, file string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err := c.Execute("PURGE BINARY LOGS TO '" + file + "'"); err != nil {
			t.Fatal(err)
		}
		r, err := c.Execute("SHOW BINARY LOGS")
		if err != nil {
			t.Fatal(err)
		}
		if first, _ := r.GetString(0, 0); first == file {
			return
		}
	}
	t.Fatalf("binlogs before %s were not purged", file)
}

// mysqlStatus is the MySQL part of status: each binlog stream's detail.
func mysqlStatus(ctx context.Context, r *archive.Repository) ([]myengine.BinlogDetail, error) {
	rep, err := jobs.Status(ctx, all.Registry(), r, time.Now())
	if err != nil {
		return nil, err
	}
	var out []myengine.BinlogDetail
	for _, s := range rep.Streams {
		if d, ok := s.Detail.(myengine.BinlogDetail); ok {
			out = append(out, d)
		}
	}
	return out, nil
}
