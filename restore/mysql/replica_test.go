package mysql

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
	mysqlbackup "github.com/tidemark/tidemark/basebackup/mysql"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/internal/testenv"
)

// newReplica starts a read-only GTID replica of primary (binary log on,
// log_slave_updates off: its own binlog holds none of the primary's
// transactions) and waits until it has caught up.
func newReplica(t *testing.T, primary *testenv.MariaDB, serverID int) *testenv.MariaDB {
	t.Helper()
	r := testenv.NewMariaDB(t, testenv.MariaDBOptions{ServerID: serverID, Args: []string{"--read-only=ON"}})
	r.ReplicateFrom(t, primary)
	r.CatchUp(t, primary)
	return r
}

// A base taken on a replica is consistent at the primary's GTID position
// and rolls forward through the primary's archived binlog by GTID.
func TestMySQLBackupFromReplica(t *testing.T) {
	primary := testenv.NewMariaDB(t, testenv.MariaDBOptions{ServerID: 1})
	repo := mysqlRepo(t)
	st := startStreamer(t, repo, primary)
	c := connect(t, primary)
	tortureSchema(t, c, "shop")
	mustExec(t, c, "CREATE TABLE shop.ticks (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6))")
	replica := newReplica(t, primary, 2)

	// Writes keep committing on the primary while the replica applies
	// them and is backed up: each must be in the snapshot or replayed
	// after it, never both or neither.
	stopWrites := keepInserting(t, connect(t, primary))
	base := backupMySQL(t, repo, replica)
	stopWrites()
	if base.Meta.Replica == nil || base.Meta.BinlogFile != "" || !strings.HasPrefix(base.Manifest.Start, "#0-1-") {
		t.Fatalf("a replica's base: meta %+v, start %q: want the primary's GTID position only", base.Meta, base.Manifest.Start)
	}
	if base.Meta.ServerID != 2 {
		t.Errorf("base server id %d, want the replica's 2", base.Meta.ServerID)
	}

	takeMark := func() mark {
		file, pos := primary.BinlogEnd(t)
		m := mark{digest: digest(t, c, "shop"), pos: binlog.Position{File: file, Pos: pos}, time: time.Now()}
		nextSecond()
		return m
	}
	nextSecond()
	mark0 := takeMark()
	mustExec(t, c, "BEGIN", "UPDATE shop.big SET n = n + 1000 WHERE id <= 100", "INSERT INTO shop.big VALUES (6001, 'six thousand one', 1)", "COMMIT",
		"FLUSH BINARY LOGS", "DELETE FROM shop.big WHERE id > 4000", "UPDATE shop.torture SET f = -f")
	latest := takeMark()
	st.waitFor(t, repo, latest.pos)
	st.stop(t)

	restoreAndCompare(t, repo, base.Manifest.ID, asOnPrimary,
		restoreCase{"time before more writes", binlog.Target{Time: mark0.time}, mark0},
		restoreCase{"latest", binlog.Target{Latest: true}, latest})

	t.Run("foreign server refused", func(t *testing.T) {
		other := testenv.NewMariaDB(t, testenv.MariaDBOptions{ServerID: 7})
		mustExec(t, connect(t, other), "CREATE DATABASE elsewhere")
		_, err := mysqlbackup.Backup(context.Background(), mysqlbackup.Config{Repo: repo, Source: other.URL(), Jobs: 1})
		if !errors.Is(err, archive.ErrSourceMismatch) || !strings.Contains(err.Error(), "not a member") {
			t.Fatalf("backup of a server with another GTID history: %v, want archive.ErrSourceMismatch naming it not a member", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = binlog.Stream(ctx, binlog.Config{Repo: repo, Source: binlog.Source{Host: other.Host, Port: uint16(other.Port), User: other.User},
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if !errors.Is(err, archive.ErrSourceMismatch) || !strings.Contains(err.Error(), "not a member") {
			t.Fatalf("stream from a server with another GTID history: %v, want archive.ErrSourceMismatch naming it not a member", err)
		}
		if names, _ := repo.Streams(context.Background(), binlog.StreamPrefix); len(names) != 1 {
			t.Errorf("binlog streams after refusing a stranger: %q, want only the primary's", names)
		}
	})
}

var autoIncrement = regexp.MustCompile(` AUTO_INCREMENT=[0-9]+`)

// asOnPrimary drops from a digest the two things a replica holds
// differently from its primary, whatever the backup does: AUTO_INCREMENT
// counters (a replica's is the next free id; the primary's also counts
// ids spent by rolled-back inserts) and replicated events, which a replica
// keeps DISABLE ON SLAVE.
func asOnPrimary(d map[string]string) map[string]string {
	out := make(map[string]string, len(d))
	for k, v := range d {
		switch {
		case strings.HasPrefix(k, "create "):
			v = autoIncrement.ReplaceAllString(v, "")
		case strings.HasPrefix(k, "event "):
			v = strings.Replace(v, " DISABLE ON SLAVE ", " DISABLE ", 1)
		}
		out[k] = v
	}
	return out
}

// restoreCase is a restore target and the shop database it must yield.
type restoreCase struct {
	name string
	to   binlog.Target
	want mark
}

// restoreAndCompare restores each case into a fresh server, checks that
// the base with id baseID was used, and compares the shop database
// (through norm) with the case's.
func restoreAndCompare(t *testing.T, repo *archive.Repository, baseID string, norm func(map[string]string) map[string]string, cases ...restoreCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst := testenv.NewMariaDB(t, testenv.MariaDBOptions{ServerID: 3})
			res, err := Restore(context.Background(), Config{Repo: repo, Target: dst.URL(), To: tc.to, Jobs: 2})
			if err != nil {
				t.Fatalf("restore to %s: %v", tc.to, err)
			}
			if res.Plan.Backup.ID != baseID {
				t.Fatalf("restored from %s, want %s", res.Plan.Backup.ID, baseID)
			}
			compareDigests(t, tc.name, norm(digest(t, connect(t, dst), "shop")), norm(tc.want.digest))
		})
	}
}
