package mysql

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/restore"
)

func newBinlogRepo(t *testing.T) *archive.Repository {
	t.Helper()
	return testenv.NewRepo(t).Repository
}

func binlogConn(t *testing.T, db *testenv.MariaDB) *client.Conn {
	t.Helper()
	c, err := db.Conn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func binlogExec(t *testing.T, c *client.Conn, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := c.Execute(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func binlogOne(t *testing.T, c *client.Conn, q string) string {
	t.Helper()
	r, err := c.Execute(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	s, _ := r.GetString(0, 0)
	return s
}

// checksums hashes every row of every table (all columns).
func binlogChecksums(t *testing.T, c *client.Conn) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tbl := range []string{"app.accounts", "app.events", "app.audit"} {
		r, err := c.Execute("CHECKSUM TABLE " + tbl + " EXTENDED")
		if err != nil {
			out[tbl] = "error: " + err.Error()
			continue
		}
		v, _ := r.GetString(0, 1)
		n := binlogOne(t, c, "SELECT COUNT(*) FROM "+tbl)
		out[tbl] = v + "/" + n
	}
	return out
}

func sameBinlogChecksums(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: table %s: checksum/count %s, want %s", what, k, got[k], v)
		}
	}
}

func TestReplayBinlogMariaDB(t *testing.T) {
	src := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	repo := newBinlogRepo(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	durable := make(chan binlog.Position)
	done := make(chan error, 1)
	go func() {
		done <- binlog.Stream(ctx, binlog.Config{Repo: repo, Source: binlog.Source{Host: src.Host, Port: uint16(src.Port), User: src.User},
			FlushInterval: 50 * time.Millisecond, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			Progress: func(p binlog.Progress) {
				select {
				case durable <- p.Durable:
				case <-ctx.Done():
				}
			}})
	}()
	c := binlogConn(t, src)
	// Phase 1: schema, rows, a multi-statement transaction, DDL.
	binlogExec(t, c, "CREATE DATABASE app",
		"CREATE TABLE app.accounts (id INT PRIMARY KEY AUTO_INCREMENT, owner VARCHAR(64) CHARACTER SET utf8mb4, balance DECIMAL(12,2), opened DATETIME(6), flags BIT(5), doc JSON, pic BLOB)",
		"CREATE TABLE app.events (id BIGINT PRIMARY KEY, kind ENUM('a','b','c'), at TIMESTAMP(3) NULL, payload TEXT)",
		"CREATE TABLE app.audit (n INT PRIMARY KEY AUTO_INCREMENT, msg VARCHAR(200)) ENGINE=InnoDB")
	for i := range 30 {
		binlogExec(t, c, fmt.Sprintf("INSERT INTO app.accounts (owner, balance, opened, flags, doc, pic) VALUES ('ówner-%d ✓', %d.%02d, '2026-01-02 03:04:05.%06d', b'10101', '{\"k\": %d, \"s\": \"x\"}', UNHEX(REPEAT('ab', %d)))", i, i*7, i, i*1111, i, i+1))
	}
	binlogExec(t, c, "BEGIN", "UPDATE app.accounts SET balance = balance - 10 WHERE id = 1", "UPDATE app.accounts SET balance = balance + 10 WHERE id = 2",
		"INSERT INTO app.events VALUES (1, 'a', '2026-05-05 05:05:05.123', REPEAT('p', 3000))", "INSERT INTO app.audit (msg) VALUES ('transfer 1->2')", "COMMIT")
	// Statement-based events: INSERT_ID, a user variable, NOW(6) (the
	// logged timestamp), a temporary table (the session's pseudo thread id).
	// A ROW-format target does not log the temporary table's DDL, so it
	// comes before the mark's last transaction.
	binlogExec(t, c, "SET SESSION binlog_format = 'STATEMENT'", "SET @who = 'statement ✓'",
		"INSERT INTO app.audit (msg) VALUES (CONCAT(@who, ' at ', NOW(6)))",
		"CREATE TEMPORARY TABLE app.scratch (x INT)", "INSERT INTO app.scratch VALUES (7), (8)",
		"INSERT INTO app.audit (msg) SELECT CONCAT('from temp ', SUM(x)) FROM app.scratch",
		"DROP TEMPORARY TABLE app.scratch", "SET SESSION binlog_format = 'ROW'")
	binlogExec(t, c, "ALTER TABLE app.events ADD COLUMN note VARCHAR(20) DEFAULT 'n/a'", "INSERT INTO app.events (id, kind) VALUES (2, 'b')",
		"DELETE FROM app.accounts WHERE id BETWEEN 20 AND 25", "FLUSH BINARY LOGS", "UPDATE app.accounts SET doc = JSON_SET(doc, '$.k', 99) WHERE id < 5")
	mark1 := binlogChecksums(t, c)
	gtid1 := binlogOne(t, c, "SELECT @@gtid_binlog_pos")
	t1 := time.Now()
	// The target time is inclusive at 1-second resolution: phase 2 starts in a later second.
	time.Sleep(time.Until(t1.Truncate(time.Second).Add(time.Second + 50*time.Millisecond)))
	// Phase 2.
	binlogExec(t, c, "INSERT INTO app.audit (msg) VALUES ('phase 2')", "ALTER TABLE app.accounts ADD COLUMN tier INT NOT NULL DEFAULT 1",
		"UPDATE app.accounts SET tier = 3 WHERE balance > 50", "BEGIN", "DELETE FROM app.events WHERE id = 1", "INSERT INTO app.events (id, kind, note) VALUES (3, 'c', 'late')", "COMMIT")
	final := binlogChecksums(t, c)
	endFile, endPos := src.BinlogEnd(t)
	for p := range durable {
		if p.File == endFile && p.Pos >= endPos || p.File > endFile {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	start := binlog.Position{File: "mysql-bin.000001", Pos: 4}

	t.Run("time then latest", func(t *testing.T) {
		dst := testenv.NewMariaDB(t, testenv.MariaDBOptions{ServerID: 2})
		dc := binlogConn(t, dst)
		res, err := ReplayBinlog(context.Background(), repo, dc, start, binlog.Target{Time: t1}, BinlogReplayOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sameBinlogChecksums(t, "to time", binlogChecksums(t, dc), mark1)
		if got := binlogOne(t, dc, "SELECT @@gtid_binlog_pos"); got != gtid1 {
			t.Errorf("target's GTID position after replay to time: %s, source's at the mark %s", got, gtid1)
		}
		// Continue from where it stopped, as from a base backup's coordinates.
		var calls, last int64
		res2, err := ReplayBinlog(context.Background(), repo, dc, res.End, binlog.Target{Latest: true}, BinlogReplayOptions{
			Progress: func(r BinlogReplayResult) {
				if r.EventsRead < last || r.EventsRead > r.EventsPlanned {
					t.Errorf("replay progress %d of %d after %d", r.EventsRead, r.EventsPlanned, last)
				}
				calls, last = calls+1, r.EventsRead
			}})
		if err != nil {
			t.Fatal(err)
		}
		if res2.Transactions == 0 {
			t.Fatal("nothing replayed after the time mark")
		}
		if calls < res2.Transactions || res2.EventsPlanned == 0 || res2.EventsRead != res2.EventsPlanned {
			t.Fatalf("replay to the latest: %d progress calls for %d transactions, %d of %d events at the end",
				calls, res2.Transactions, res2.EventsRead, res2.EventsPlanned)
		}
		sameBinlogChecksums(t, "latest", binlogChecksums(t, dc), final)
	})
	t.Run("gtid", func(t *testing.T) {
		dst := testenv.NewMariaDB(t, testenv.MariaDBOptions{ServerID: 3})
		dc := binlogConn(t, dst)
		if _, err := ReplayBinlog(context.Background(), repo, dc, start, binlog.Target{GTID: gtid1}, BinlogReplayOptions{}); err != nil {
			t.Fatal(err)
		}
		sameBinlogChecksums(t, "to GTID", binlogChecksums(t, dc), mark1)
	})
	t.Run("outside window", func(t *testing.T) {
		err := CheckBinlogCoverage(context.Background(), repo, start, binlog.Target{Time: time.Now().Add(time.Hour)})
		if !errors.Is(err, restore.ErrUnreachable) {
			t.Fatalf("target after the archive: %v, want restore.ErrUnreachable", err)
		}
		err = CheckBinlogCoverage(context.Background(), repo, binlog.Position{File: "mysql-bin.000000", Pos: 4}, binlog.Target{Latest: true})
		if !errors.Is(err, restore.ErrGap) {
			t.Fatalf("base before the archive: %v, want restore.ErrGap", err)
		}
	})
}
