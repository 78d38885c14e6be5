package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestInterruptedRestoreIsMarked: a restore stopped half-way leaves a
// directory that says it is incomplete; a plain restore into it is refused
// as a target holding data (exit 10), starting it is refused, and --delta
// finishes it into a cluster that recovers.
func TestInterruptedRestoreIsMarked(t *testing.T) {
	p := newPITR(t)
	p.startStreaming()
	p.exec("CREATE TABLE t AS SELECT g, md5(g::text) AS v FROM generate_series(1, 200000) g")
	p.backup()
	p.waitArchived()
	p.stopWAL()

	dir := filepath.Join(t.TempDir(), "restored")
	cmd := fmt.Sprintf("%s wal-fetch --repo %s --identity-file %s %%f %%p", testenv.TidemarkBinary(t), p.repoURL, p.keyFile)
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Restore(ctx, Config{Repo: p.repo, TargetDir: dir, Target: Target{Latest: true}, Jobs: 2, RestoreCommand: cmd, Log: p.log(),
		Progress: func(done, total int64) {
			if done > 0 {
				cancel() // killed part-way
			}
		}})
	if err == nil || !strings.Contains(err.Error(), IncompleteMarker) || !strings.Contains(err.Error(), "--delta") {
		t.Fatalf("interrupted restore: %v", err)
	}
	if !Incomplete(dir) {
		t.Fatalf("interrupted restore left no %s in %s", IncompleteMarker, dir)
	}
	_, err = Restore(context.Background(), Config{Repo: p.repo, TargetDir: dir, Target: Target{Latest: true}, RestoreCommand: cmd, Log: p.log()})
	if !errors.Is(err, archive.ErrTargetHoldsData) || !strings.Contains(err.Error(), "unfinished restore") {
		t.Fatalf("plain restore into an unfinished one: %v", err)
	}
	if _, err := StartRestored(context.Background(), dir, testenv.PostgresBinDir, 1, 0, nil, nil); !errors.Is(err, archive.ErrTargetHoldsData) && !errors.Is(err, ErrRunningAsRoot) {
		t.Fatalf("start on an unfinished restore: %v", err)
	}
	if _, err := Restore(context.Background(), Config{Repo: p.repo, TargetDir: dir, Target: Target{Latest: true}, Delta: true, Jobs: 2,
		RestoreCommand: cmd, Log: p.log()}); err != nil {
		t.Fatalf("delta restore finishing it: %v", err)
	}
	if Incomplete(dir) {
		t.Fatal("a finished restore still carries the marker")
	}
	p.pg.Grant(t, p.keyFile)
	p.pg.Grant(t, p.repoDir)
	r := testenv.NewPostgreSQL(t, testenv.PostgresOptions{DataDir: dir})
	c, err := pgx.Connect(context.Background(), r.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	testenv.WaitPromoted(t, c)
	if n := count(t, c, "t"); n != 200000 {
		t.Fatalf("%d rows after finishing with --delta, want 200000", n)
	}
}

// TestEmptyDirRefusesData: a non-empty target is the "holds data" class.
func TestEmptyDirRefusesData(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("15\n"), 0o600)
	if err := emptyDir(dir); !errors.Is(err, archive.ErrTargetHoldsData) {
		t.Fatalf("restore into a non-empty directory: %v", err)
	}
}

// TestRecoveryFailureKeepsFetchClass: when recovery aborts because
// wal-fetch found an archived file corrupt, the restore fails as
// corruption, so `restore --start` exits 3.
func TestRecoveryFailureKeepsFetchClass(t *testing.T) {
	for _, c := range []struct {
		fetch string
		want  error
	}{
		{"tidemark: cannot fetch (recovery must stop here, not end early): wal-fetch 000000010000000000000003: segment wal/00000001/000000010000000000000003: " + archive.ErrCorrupt.Error() + ": SHA-256 mismatch", archive.ErrCorrupt},
		{"tidemark: cannot fetch (recovery must stop here, not end early): " + archive.ErrWrongIdentity.Error(), archive.ErrWrongIdentity},
	} {
		log := filepath.Join(t.TempDir(), "log")
		os.WriteFile(log, []byte("LOG:  starting archive recovery\n"+c.fetch+
			"\nFATAL:  could not restore file \"000000010000000000000003\" from archive: child process exited with exit code 126\n"), 0o600)
		_, err := scanRecoveryLog(log, &Recovered{})
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), "could not restore file") {
			t.Errorf("recovery aborted by %q: %v", c.fetch, err)
		}
	}
}

// TestRestoredSegmentLines: only WAL segments count as replay progress,
// not history files or other lines.
func TestRestoredSegmentLines(t *testing.T) {
	for line, want := range map[string]bool{
		`2026-12-06 10:00:00 UTC [1] LOG:  restored log file "000000010000000000000003" from archive`: true,
		`LOG:  restored log file "00000002.history" from archive`:                                     false,
		`LOG:  restored log file "000000010000000000000003.partial" from archive`:                     false,
		`LOG:  redo starts at 0/3000028`:                                                              false,
	} {
		if got := restoredSegment(line); got != want {
			t.Errorf("%q: %v, want %v", line, got, want)
		}
	}
}
