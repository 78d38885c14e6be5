package postgres

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/restore"
)

// TestEveryMajor: stream, back up with the streamer running, and restore
// to a time and to the latest WAL on each supported major besides the two
// the whole suite runs on (15, and 17 through TIDEMARK_PG_MAJOR); then
// stream from the promoted restore (timeline 2) into the same repository
// and restore the timeline-1 backup again, across the switch.
func TestEveryMajor(t *testing.T) {
	for _, major := range []int{13, 14, 16, 18} {
		t.Run(fmt.Sprint(major), func(t *testing.T) { testMajor(t, major) })
	}
}

func testMajor(t *testing.T, major int) {
	p := newPITRWith(t, "", major)
	res, markTime := p.ordersScenario()
	if res.Meta.WALArchivedBy != "streamer" {
		t.Fatalf("WAL archived by %q with a streamer running", res.Meta.WALArchivedBy)
	}

	if n := count(t, p.restore(Target{Time: markTime}), "orders"); n != 1500 {
		t.Fatalf("PostgreSQL %d, restore to time: %d orders, want 1500", major, n)
	}
	p.drill(Target{Latest: true})
	promoted, c := p.restoreServer(Target{Latest: true}, nil)
	if n := count(t, c, "orders"); n != 1300 {
		t.Fatalf("PostgreSQL %d, restore to latest: %d orders, want 1300", major, n)
	}

	// The restored server is on timeline 2: archive its changes too.
	p.pg, p.conn = promoted, c
	p.startStreaming()
	p.exec("INSERT INTO orders SELECT g, 'timeline 2' FROM generate_series(2001, 2100) g")
	p.waitArchived()
	p.stopWAL()
	again := p.restore(Target{Latest: true})
	var tli int
	if err := again.QueryRow(t.Context(), "SELECT timeline_id FROM pg_control_checkpoint()").Scan(&tli); err != nil {
		t.Fatal(err)
	}
	if n := count(t, again, "orders"); n != 1400 || tli < 3 {
		t.Fatalf("PostgreSQL %d, restore across the timeline switch: %d orders on timeline %d, want 1400 on timeline 3", major, n, tli)
	}
}

// TestBinDirMatchesMajor: the binaries found for --start and drill are of
// the backup's major (before, pg_config's were taken whatever their version).
func TestBinDirMatchesMajor(t *testing.T) {
	bin17, err := testenv.PostgresBin(17)
	if err != nil {
		testenv.Unavailable(t, "PostgreSQL 17", err)
	}
	t.Setenv("PATH", bin17+":"+os.Getenv("PATH"))
	if d, err := BinDir("15.18"); err != nil || d != testenv.PostgresBinDir {
		t.Fatalf("15: %s, %v", d, err)
	}
	if d, err := BinDir("17.10"); err != nil || d != bin17 {
		t.Fatalf("17: %s, %v", d, err)
	}
	if _, err := BinDir("16.2 (Debian 16.2-1)"); err == nil || !strings.Contains(err.Error(), "PostgreSQL 16 binaries not found") {
		t.Fatalf("16, not installed: %v", err)
	}
}

// drill runs a drill to target with the server's own binaries and fails
// the test unless every check passed.
func (p *pitr) drill(target Target) {
	p.t.Helper()
	var as *restore.OSUser
	if os.Geteuid() == 0 {
		var err error
		if as, err = restore.LookupOSUser("postgres"); err != nil {
			p.t.Fatal(err)
		}
	}
	p.pg.Grant(p.t, p.keyFile, p.repoDir)
	fetch := FetchCommand{Binary: testenv.TidemarkBinary(p.t), Repo: p.repoURL, IdentityFile: p.keyFile}
	rep, err := Drill(context.Background(), DrillConfig{Repo: p.repo, Target: target, Fetch: fetch, As: as,
		BinDir: p.pg.BinDir, Timeout: 2 * time.Minute, Log: p.log()})
	if err != nil || !rep.OK || rep.IndexesChecked == 0 {
		p.t.Fatalf("drill on PostgreSQL %d: %v, %+v", p.pg.Major, err, rep)
	}
}
