package mysql

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/restore"
)

// streamer runs the binlog streamer for a test.
type streamer struct {
	cancel context.CancelFunc
	done   chan error
}

// startStreamer streams from srcs (several: one replication cluster,
// the streamer follows its primary).
func startStreamer(t *testing.T, repo *archive.Repository, srcs ...*testenv.MariaDB) *streamer {
	ctx, cancel := context.WithCancel(context.Background())
	s := &streamer{cancel: cancel, done: make(chan error, 1)}
	var sources []binlog.Source
	for _, src := range srcs {
		sources = append(sources, binlog.Source{Host: src.Host, Port: uint16(src.Port), User: src.User})
	}
	go func() {
		s.done <- binlog.Stream(ctx, binlog.Config{Repo: repo, Source: sources[0], Sources: sources,
			FlushInterval: 50 * time.Millisecond, MaxSegmentBytes: 256 << 10,
			Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	}()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// waitFor waits until the archive holds the binlog up to p, read from the
// repository's index (the streamer's progress reports lag when a large
// transaction is flushed inside Append).
func (s *streamer) waitFor(t *testing.T, repo *archive.Repository, p binlog.Position) {
	t.Helper()
	var end binlog.Position
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		sums, err := binlog.Summarize(context.Background(), repo)
		if err != nil {
			t.Fatal(err)
		}
		for _, sum := range sums {
			if end, err = binlog.ParsePosition(sum.End); err == nil && (end.File > p.File || end.File == p.File && end.Pos >= p.Pos) {
				return
			}
		}
	}
	t.Fatalf("the streamer did not archive up to %s (archive ends at %s)", p, end)
}

func (s *streamer) stop(t *testing.T) {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	if err := <-s.done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("streamer: %v", err)
	}
}

// keepInserting inserts into shop.ticks on c until the returned stop is
// called (which waits for the last insert).
func keepInserting(t *testing.T, c *client.Conn) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := c.Execute("INSERT INTO shop.ticks (at) VALUES (NOW(6))"); err != nil {
				t.Errorf("concurrent insert: %v", err)
				return
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

type mark struct {
	digest map[string]string
	pos    binlog.Position
	gtid   string
	time   time.Time
}

// nextSecond waits until a new wall-clock second starts: binlog times have
// whole seconds, so a time mark must not share its second with later writes.
func nextSecond() {
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 20*time.Millisecond)))
}

func TestMySQLPointInTimeRestore(t *testing.T) {
	src := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	repo := mysqlRepo(t)
	st := startStreamer(t, repo, src)
	c := connect(t, src)
	tortureSchema(t, c, "shop")
	mustExec(t, c, "CREATE TABLE shop.ticks (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6))")

	// Writes keep committing while the base backup runs: each must be in
	// the snapshot or in the binlog after its position, never both or
	// neither.
	stopWrites := keepInserting(t, connect(t, src))
	// Every database, as users back up: the source and the targets are
	// default installs, whose empty `test` database is in the backup and
	// on every target, and is no reason to refuse.
	base := backupMySQL(t, repo, src)
	stopWrites()
	if !slices.Contains(base.Meta.Databases, "test") {
		t.Fatalf("backed up databases %q: the default install's test database is missing", base.Meta.Databases)
	}

	takeMark := func() mark {
		file, pos := src.BinlogEnd(t)
		m := mark{digest: digest(t, c, "shop"), pos: binlog.Position{File: file, Pos: pos}, gtid: binlogOne(t, c, "SELECT @@gtid_binlog_pos"), time: time.Now()}
		nextSecond()
		return m
	}
	nextSecond()
	mark0 := takeMark()
	// Phase 1: a multi-statement transaction, and a column added mid-way.
	mustExec(t, c, "BEGIN", "UPDATE shop.big SET n = n + 1000 WHERE id <= 100", "DELETE FROM shop.nopk WHERE a IS NULL",
		"INSERT INTO shop.big VALUES (6001, 'six thousand one', 1)", "COMMIT",
		"ALTER TABLE shop.big ADD COLUMN note VARCHAR(30) CHARACTER SET utf8mb4 DEFAULT 'ñ'",
		"UPDATE shop.big SET note = 'über 𝄞' WHERE id % 7 = 0")
	mark1 := takeMark()
	// Phase 2: rows through the trigger, a rolled-back transaction, a
	// second multi-statement one, and a rotation.
	mustExec(t, c, "INSERT INTO shop.big (id, v, n) VALUES (7000, 'lower', 3)",
		"BEGIN", "DELETE FROM shop.big WHERE id > 3000", "ROLLBACK",
		"FLUSH BINARY LOGS",
		"BEGIN", "UPDATE shop.torture SET d = d / 3, vc = CONCAT(vc, '✓') WHERE id IN (2, 4)", "INSERT INTO shop.child (big_id) VALUES (3999)", "COMMIT")
	mark2 := takeMark()
	mustExec(t, c, "DELETE FROM shop.big WHERE id > 4000", "UPDATE shop.torture SET f = -f")
	latest := takeMark()
	st.waitFor(t, repo, latest.pos)
	st.stop(t)
	if problems, err := VerifyBases(context.Background(), repo); err != nil || len(problems) > 0 {
		t.Fatalf("verify of a complete archive: %v %q", err, problems)
	}

	restoreTo := func(t *testing.T, to binlog.Target) *testenv.MariaDB {
		dst := testenv.NewMariaDB(t, testenv.MariaDBOptions{ServerID: 2})
		res, err := Restore(context.Background(), Config{Repo: repo, Target: dst.URL(), To: to, Jobs: 2})
		if err != nil {
			t.Fatalf("restore to %s: %v", to, err)
		}
		if res.Plan.Backup.ID != base.Manifest.ID {
			t.Fatalf("restored from %s, want %s", res.Plan.Backup.ID, base.Manifest.ID)
		}
		return dst
	}
	for _, tc := range []struct {
		name string
		to   binlog.Target
		want mark
	}{
		{"time mark 0", binlog.Target{Time: mark0.time}, mark0},
		{"gtid mark 1", binlog.Target{GTID: mark1.gtid}, mark1},
		{"position mark 2", binlog.Target{Position: mark2.pos}, mark2},
		{"latest", binlog.Target{Latest: true}, latest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := restoreTo(t, tc.to)
			compareDigests(t, tc.name, digest(t, connect(t, dst), "shop"), tc.want.digest)
		})
	}

	t.Run("missing segment refused before writing", func(t *testing.T) {
		chain, err := repo.ReadStream(context.Background(), base.Manifest.Stream)
		if err != nil {
			t.Fatal(err)
		}
		from := base.Meta.Position()
		var victim *archive.SegmentInfo
		for i, s := range chain.Segments {
			start, err := binlog.ParsePosition(s.Start)
			if err == nil && (start.File > from.File || start.File == from.File && start.Pos > from.Pos) && i < len(chain.Segments)-1 {
				victim = &chain.Segments[i]
				break
			}
		}
		if victim == nil {
			t.Fatalf("no segment after the base among %d", len(chain.Segments))
		}
		key := fmt.Sprintf("%016x-%016x", victim.First, victim.Last)
		for _, dir := range []string{"/idx/", "/seg/"} {
			if err := repo.Store().Delete(context.Background(), victim.Stream+dir+key); err != nil {
				t.Fatal(err)
			}
		}
		problems, err := VerifyBases(context.Background(), repo)
		if err != nil || len(problems) != 1 || !strings.Contains(problems[0], base.Manifest.ID) {
			t.Fatalf("verify after deleting a segment: %v %q", err, problems)
		}
		dst := testenv.NewMariaDB(t, testenv.MariaDBOptions{ServerID: 3})
		_, err = Restore(context.Background(), Config{Repo: repo, Target: dst.URL(), To: binlog.Target{Latest: true}})
		if !errors.Is(err, restore.ErrGap) {
			t.Fatalf("restore across a missing segment: %v, want restore.ErrGap", err)
		}
		if !strings.Contains(err.Error(), victim.Start) && !strings.Contains(err.Error(), victim.Group) {
			t.Errorf("the error does not name the missing range (%s – %s): %v", victim.Start, victim.End, err)
		}
		if n := binlogOne(t, connect(t, dst), "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'shop'"); n != "0" {
			t.Fatalf("the refused restore wrote to the target")
		}
	})
}
