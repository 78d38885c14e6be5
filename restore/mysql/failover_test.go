package mysql

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/internal/testenv"
)

// haPair starts a primary and a GTID replica that logs what it applies
// (log_slave_updates, as a promotion candidate must, unless logApplied is
// false), with a small shop database replicated to it.
func haPair(t *testing.T, logApplied bool) (primary, replica *testenv.MariaDB) {
	primary = testenv.NewMariaDB(t, testenv.MariaDBOptions{ServerID: 1})
	args := []string{"--read-only=ON"}
	if logApplied {
		args = append(args, "--log-slave-updates=ON")
	}
	replica = testenv.NewMariaDB(t, testenv.MariaDBOptions{ServerID: 2, Args: args})
	mustExec(t, connect(t, primary), "CREATE DATABASE shop", "CREATE TABLE shop.items (id INT PRIMARY KEY, v VARCHAR(40), n INT)",
		"INSERT INTO shop.items VALUES (1, 'one', 1), (2, 'two', 2)")
	replica.ReplicateFrom(t, primary)
	replica.CatchUp(t, primary)
	return primary, replica
}

// gtidPos is the server's @@gtid_binlog_pos.
func gtidPos(t *testing.T, m *testenv.MariaDB) string {
	return binlogOne(t, connect(t, m), "SELECT @@gtid_binlog_pos")
}

// waitForGTID waits until some binlog stream of the repository ends at
// or past every GTID of pos.
func (s *streamer) waitForGTID(t *testing.T, repo *archive.Repository, pos string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok, err := binlog.Reached(context.Background(), repo, pos); err != nil {
			t.Fatal(err)
		} else if ok {
			return
		}
	}
	sums, _ := binlog.Summarize(context.Background(), repo)
	var ends []string
	for _, sum := range sums {
		ends = append(ends, sum.Stream+" "+sum.End)
	}
	t.Fatalf("the streamer did not archive up to %s (streams end at %q)", pos, ends)
}

// The streamer given both servers follows the primary's promotion: the
// promoted replica's binlog continues the archive by GTID in a stream of
// its own, and a restore crosses the switch.
func TestMySQLStreamFollowsPromotedReplica(t *testing.T) {
	primary, replica := haPair(t, true)
	repo := mysqlRepo(t)
	st := startStreamer(t, repo, primary, replica)
	base := backupMySQL(t, repo, primary, "shop")
	c := connect(t, primary)
	mustExec(t, c, "INSERT INTO shop.items VALUES (3, 'three', 3)", "UPDATE shop.items SET n = n + 100")
	nextSecond()
	before := mark{digest: digest(t, c, "shop"), time: time.Now()}
	nextSecond()
	mustExec(t, c, "INSERT INTO shop.items VALUES (4, 'four', 4)", "FLUSH BINARY LOGS", "UPDATE shop.items SET v = CONCAT(v, '!') WHERE id < 3")
	replica.CatchUp(t, primary)
	st.waitForGTID(t, repo, gtidPos(t, primary))

	primary.Kill()
	replica.Promote(t)
	rc := connect(t, replica)
	mustExec(t, rc, "INSERT INTO shop.items VALUES (5, 'five', 5)", "DELETE FROM shop.items WHERE id = 1",
		"FLUSH BINARY LOGS", "UPDATE shop.items SET n = -n WHERE id = 5")
	latest := mark{digest: digest(t, rc, "shop")}
	st.waitForGTID(t, repo, gtidPos(t, replica))
	st.stop(t)

	sums, err := binlog.Summarize(context.Background(), repo)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range sums {
		names = append(names, s.Stream)
	}
	if strings.Join(names, " ") != "binlog/0000000001 binlog/0000000002" {
		t.Fatalf("streams %q: want the old primary's and the promoted replica's", names)
	}
	if sums[1].Start[strings.Index(sums[1].Start, "#")+1:] != sums[0].End[strings.Index(sums[0].End, "#")+1:] {
		t.Errorf("the promoted replica's stream starts at %s, the old primary's ends at %s: want the same GTID state", sums[1].Start, sums[0].End)
	}
	if c := binlog.Continues(sums, sums[1].Stream); len(c) != 1 || c[0] != sums[0].Stream {
		t.Errorf("%s continues %q, want [%s] (status pairs the base with it)", sums[1].Stream, c, sums[0].Stream)
	}
	if c := binlog.Continues(sums, sums[0].Stream); len(c) != 0 {
		t.Errorf("%s continues %q, want nothing", sums[0].Stream, c)
	}

	same := func(d map[string]string) map[string]string { return d }
	restoreAndCompare(t, repo, base.Manifest.ID, same,
		restoreCase{"time before the switch", binlog.Target{Time: before.time}, before},
		restoreCase{"latest, across the switch", binlog.Target{Latest: true}, latest})

	// A binlog file name means a place only within one server's stream:
	// a position target across the switch is refused, not guessed.
	from, err := binlog.ParsePosition(base.Manifest.Start)
	if err != nil {
		t.Fatal(err)
	}
	err = CheckBinlogCoverage(context.Background(), repo, from, binlog.Target{Position: binlog.Position{File: "mysql-bin.000002", Pos: 4}})
	if !errors.Is(err, binlog.ErrBadPosition) || !strings.Contains(err.Error(), "ambiguous") {
		t.Fatalf("a position target across the switch: %v, want it refused as ambiguous", err)
	}
}

// Transactions the old primary wrote and the streamer archived, but the
// replica never received, make the promoted replica's history fork: the
// streamer stops with a recorded gap naming them instead of splicing the
// two histories.
func TestMySQLStreamFailoverLostTransactionsAreAGap(t *testing.T) {
	primary, replica := haPair(t, true)
	repo := mysqlRepo(t)
	st := startStreamer(t, repo, primary, replica)
	mustExec(t, connect(t, replica), "STOP SLAVE")
	c := connect(t, primary)
	reached := gtidPos(t, primary)
	mustExec(t, c, "INSERT INTO shop.items VALUES (3, 'three', 3)", "INSERT INTO shop.items VALUES (4, 'four', 4)")
	st.waitForGTID(t, repo, gtidPos(t, primary))
	primary.Kill()
	replica.Promote(t)

	err := st.stopped(t)
	g, _ := binlog.ParseMariaGTID(reached)
	lost := binlog.MariaGTID{Domain: g.Domain, Server: g.Server, Seq: g.Seq + 1}.String() + " to " + binlog.MariaGTID{Domain: g.Domain, Server: g.Server, Seq: g.Seq + 2}.String()
	if !errors.Is(err, binlog.ErrGap) || !strings.Contains(err.Error(), lost) {
		t.Fatalf("streamer after promoting a replica that missed %s: %v, want binlog.ErrGap naming them", lost, err)
	}
	gaps, gerr := repo.Gaps(context.Background())
	if gerr != nil || len(gaps) != 1 || !strings.Contains(gaps[0].Reason, lost) {
		t.Fatalf("gap records %+v (%v): want one naming %s", gaps, gerr, lost)
	}
}

// A promoted replica that did not log what it applied cannot continue the
// archive from its binlog: the streamer stops, saying why, and records no
// gap (nothing is lost yet: the setting can be fixed).
func TestMySQLStreamFailoverNeedsLogSlaveUpdates(t *testing.T) {
	primary, replica := haPair(t, false)
	repo := mysqlRepo(t)
	st := startStreamer(t, repo, primary, replica)
	mustExec(t, connect(t, primary), "INSERT INTO shop.items VALUES (3, 'three', 3)")
	replica.CatchUp(t, primary)
	st.waitForGTID(t, repo, gtidPos(t, primary))
	primary.Kill()
	replica.Promote(t)
	err := st.stopped(t)
	if !errors.Is(err, binlog.ErrUnsupported) || !strings.Contains(err.Error(), "log_slave_updates") {
		t.Fatalf("streamer after promoting a replica without log_slave_updates: %v, want binlog.ErrUnsupported naming the setting", err)
	}
	if gaps, err := repo.Gaps(context.Background()); err != nil || len(gaps) != 0 {
		t.Fatalf("gap records %+v (%v): want none", gaps, err)
	}
}

// stopped waits for the streamer to stop on its own and returns why.
func (s *streamer) stopped(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.done:
		s.cancel()
		s.cancel = nil
		return err
	case <-time.After(90 * time.Second):
		t.Fatal("the streamer did not stop")
		return nil
	}
}
