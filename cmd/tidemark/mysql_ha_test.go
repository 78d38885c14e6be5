package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestMySQLFailoverHA: `tidemark stream` given a MariaDB primary and its
// replica follows the replica's promotion after the primary is killed;
// status pairs the base with the promoted server's stream; a restore
// crosses the switch; a backup taken from a replica restores too.
func TestMySQLFailoverHA(t *testing.T) {
	primary := testenv.NewMariaDB(t, testenv.MariaDBOptions{ServerID: 1})
	replica := testenv.NewMariaDB(t, testenv.MariaDBOptions{ServerID: 2, Args: []string{"--read-only=ON", "--log-slave-updates=ON"}})
	// The stream and backup users of docs/setup-mysql.md (one password
	// here), created on the primary and replicated: the replica has them.
	primary.Exec(t, "CREATE USER 'tidemark_stream'@'%' IDENTIFIED BY 'stream-pw'")
	primary.Exec(t, "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'tidemark_stream'@'%'")
	primary.Exec(t, "CREATE USER 'tidemark_backup'@'%' IDENTIFIED BY 'stream-pw'")
	primary.Exec(t, "GRANT RELOAD, SELECT, SHOW VIEW, TRIGGER, EVENT, BINLOG MONITOR ON *.* TO 'tidemark_backup'@'%'")
	primary.Exec(t, "CREATE DATABASE app")
	primary.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20))")
	primary.Exec(t, "INSERT INTO app.t SELECT seq, CONCAT('v', seq) FROM app.seq_1_to_100")
	replica.ReplicateFrom(t, primary)
	replica.CatchUp(t, primary)

	repo := filepath.Join(t.TempDir(), "repo")
	key, id := keyFile(t)
	expect(t, 0, "init", "--repo", repo, "--recipient", id.Recipient().String())
	var logs testenv.LockedBuffer
	pwFile := filepath.Join(t.TempDir(), "stream.pw")
	if err := os.WriteFile(pwFile, []byte("stream-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A stream user short of BINLOG MONITOR on every server: no reconnect
	// can grant it, so the stream stops at once naming it (before, several
	// hosts turned each refusal into text and the stream retried forever).
	primary.Exec(t, "CREATE USER 'tidemark_nomon'@'%' IDENTIFIED BY 'stream-pw'")
	primary.Exec(t, "GRANT REPLICATION SLAVE ON *.* TO 'tidemark_nomon'@'%'")
	replica.CatchUp(t, primary)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	denied, err := exec.CommandContext(ctx, testenv.TidemarkBinary(t), "stream", "--repo", repo, "--password-file", pwFile,
		"--source", fmt.Sprintf("mysql://tidemark_nomon@%s,%s/", primary.Addr(), replica.Addr())).CombinedOutput()
	cancel()
	if code := exitStatus(err); code != exitError || !strings.Contains(string(denied), "lacks a privilege") {
		t.Fatalf("stream over two servers, both refusing for want of a privilege: exit %d (%v)\n%s", code, err, denied)
	}

	source := fmt.Sprintf("mysql://tidemark_stream@%s,%s/", primary.Addr(), replica.Addr())
	stop := runStreamer(t, &logs, "--repo", repo, "--source", source, "--password-file", pwFile)
	r := openRepo(t, repo, key)
	waitGTID(t, r, primary)
	out, _ := expect(t, 0, "backup", "--repo", repo, "--source", fmt.Sprintf("mysql://tidemark_backup@%s/", replica.Addr()),
		"--password-file", pwFile, "--databases", "app")
	if !strings.Contains(out, "consistent at #0-1-") {
		t.Fatalf("backup from the replica: %s", out)
	}

	primary.Exec(t, "INSERT INTO app.t VALUES (101, 'before the switch')")
	replica.CatchUp(t, primary)
	waitGTID(t, r, primary)
	primary.Kill()
	replica.Promote(t)
	replica.Exec(t, "INSERT INTO app.t VALUES (102, 'after the switch')")
	replica.Exec(t, "UPDATE app.t SET v = 'changed' WHERE id = 1")
	waitGTID(t, r, replica)
	stop()

	out, _ = expect(t, 0, "status", "--repo", repo)
	if !strings.Contains(out, "binlog/0000000002") || strings.Contains(out, "NOTHING") {
		t.Fatalf("status after the switch: want the promoted server's stream, recoverable from the base:\n%s", out)
	}
	dst := testenv.NewMariaDB(t, testenv.MariaDBOptions{ServerID: 3})
	expect(t, 0, "restore", "--repo", repo, "--identity-file", key, "--target", dst.URL(), "--latest")
	got := rowInts(t, dst, "SELECT COUNT(*), SUM(v = 'changed'), SUM(id = 102) FROM app.t")
	n, changed, after := got[0], got[1], got[2]
	if n != 102 || changed != 1 || after != 1 {
		t.Fatalf("restored app.t: %d rows, %d changed, %d written after the switch; want 102, 1, 1", n, changed, after)
	}
}

// waitGTID waits until some binlog stream ends at the server's
// @@gtid_binlog_pos or past it.
func waitGTID(t *testing.T, r *archive.Repository, db *testenv.MariaDB) {
	t.Helper()
	c, err := db.Conn()
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Execute("SELECT @@gtid_binlog_pos")
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	pos, _ := res.GetString(0, 0)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok, err := binlog.Reached(context.Background(), r, pos); err != nil {
			t.Fatal(err)
		} else if ok {
			return
		}
	}
	t.Fatalf("the archive did not reach %s", pos)
}

// rowInts runs a query on db and returns its first row as integers.
func rowInts(t *testing.T, db *testenv.MariaDB, q string) []int64 {
	t.Helper()
	c, err := db.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Execute(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	out := make([]int64, len(r.Fields))
	for i := range out {
		out[i], _ = r.GetInt(0, i)
	}
	return out
}
