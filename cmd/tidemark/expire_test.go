package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/restore"
	"github.com/tidemark/tidemark/wal"
)

// TestExpirePostgres: expiring the older of two backups deletes it and the
// WAL only it needed; the newer one still restores, and a target before it
// is refused as outside the recoverable window.
func TestExpirePostgres(t *testing.T) {
	ctx := context.Background()
	pg := testenv.NewPostgreSQL(t, testenv.PostgresOptions{})
	bin := testenv.TidemarkBinary(t)
	base := t.TempDir()
	repo := filepath.Join(base, "repo")
	keyPath, id := keyFile(t)
	expect(t, 0, "init", "--repo", repo, "--recipient", id.Recipient().String())
	c := startStreaming(t, bin, pg, repo)
	exec1 := func(sql string) {
		t.Helper()
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec1("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
	expect(t, 0, "backup", "--repo", repo, "--source", pg.URL("postgres"), "--fast-checkpoint")
	between := time.Now()
	// Enough WAL between the backups that whole segments fall before the
	// second one.
	for i := 0; i < 3; i++ {
		exec1("SELECT pg_switch_wal()")
		exec1("INSERT INTO t SELECT g FROM generate_series(1, 1000) g")
	}
	expect(t, 0, "backup", "--repo", repo, "--source", pg.URL("postgres"), "--fast-checkpoint")

	out, _ := expect(t, 0, "expire", "--repo", repo, "--keep-last", "1", "--dry-run", "--json")
	var dry struct {
		DryRun  bool `json:"dry_run"`
		Backups []struct {
			Keep bool `json:"keep"`
		} `json:"backups"`
		Streams struct{ Objects int } `json:"streams"`
	}
	if err := json.Unmarshal([]byte(out), &dry); err != nil || !dry.DryRun || len(dry.Backups) != 2 || dry.Backups[1].Keep || dry.Streams.Objects < 3 {
		t.Fatalf("expire --dry-run: %v\n%s", err, out)
	}
	out, _ = expect(t, 0, "expire", "--repo", repo, "--keep-last", "1")
	if !strings.Contains(out, "deleted: 1 backups") || !strings.Contains(out, "WAL before") {
		t.Fatalf("expire output:\n%s", out)
	}
	expect(t, 0, "verify", "--repo", repo, "--identity-file", keyPath)
	expect(t, 2, "expire", "--repo", repo)
	// The restored server's OS user reads the repository and the key
	// through restore_command (as root, the restore checks it can).
	pg.Grant(t, repo, keyPath)
	expect(t, exitUnreachable, "restore", "--repo", repo, "--identity-file", keyPath, "--target-dir", filepath.Join(base, "early"),
		"--to-time", between.Format(time.RFC3339Nano))
	expect(t, 0, "restore", "--repo", repo, "--identity-file", keyPath, "--target-dir", filepath.Join(base, "latest"), "--latest")

	// A drill to a random point restores the one kept backup into a
	// scratch server (as root: run as postgres, which reads the repository
	// through restore_command), replays WAL past it, checks the result and
	// records the report.
	exec1("INSERT INTO t SELECT g FROM generate_series(1, 100) g")
	waitWALArchived(t, c)
	kept := statusOf(t, repo).Backups[0]
	drill := exec.Command(bin, "drill", "--repo", repo, "--identity-file", keyPath, "--random-point", "--json")
	drill.Stderr = os.Stderr
	out2, err := drill.Output()
	if err != nil {
		t.Fatalf("drill: %v\n%s", err, out2)
	}
	var rep restore.DrillReport
	if err := json.Unmarshal(out2, &rep); err != nil || !rep.OK || rep.Rows < 4000 || rep.Rows > 4100 || rep.Tables != 1 || rep.IndexesChecked == 0 || rep.RTOSeconds <= 0 {
		t.Fatalf("drill report: %v\n%s", err, out2)
	}
	// With one backup the random point still lies past it: WAL to replay.
	target, err := wal.ParseLSN(strings.TrimPrefix(rep.Target, "lsn "))
	stop, _ := wal.ParseLSN(kept.Stop)
	if err != nil || rep.Backup != kept.ID || target <= stop {
		t.Fatalf("drill --random-point to %q from backup %s (stop %s): %v", rep.Target, rep.Backup, kept.Stop, err)
	}
}
