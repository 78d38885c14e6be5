package faults

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKillNineUnderLoad: the streamer and base backups are killed with -9
// at random moments while an application commits synchronously (a commit
// returns only once the repository holds it). Afterwards the repository
// verifies (what the killed backups left is listed, not hidden), expire
// removes those leftovers, its dry run counting exactly what it then
// deletes, and a restore of the latest point holds every acknowledged
// commit.
func TestKillNineUnderLoad(t *testing.T) {
	seed := time.Now().UnixNano()
	rnd := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("seed %d", seed)
	pg := syncPostgres(t)
	c := newCLI(t)
	repo := filepath.Join(t.TempDir(), "repo")
	key, recipient := keyFile(t, pg)
	c.expect(0, "init", "--repo", repo, "--recipient", recipient)
	stream := c.start(streamArgs(repo, pg)...)
	l := startLoad(t, pg)
	l.waitGrowth(t, 20, time.Minute)
	t0 := time.Now()

	for i := range 4 {
		time.Sleep(time.Duration(200+rnd.IntN(1200)) * time.Millisecond)
		stream.kill9()
		n := l.count()
		time.Sleep(300 * time.Millisecond)
		if grew := l.count() - n; grew > 1 {
			t.Fatalf("cycle %d: %d commits acknowledged while the synchronous streamer was dead", i, grew)
		}
		stream = c.start(streamArgs(repo, pg)...)
		l.waitGrowth(t, 20, time.Minute)
	}
	t.Logf("stream kills: %s", time.Since(t0))
	t0 = time.Now()
	for i := range 2 {
		b := c.start("backup", "--repo", repo, "--source", pg.URL("postgres"), "--fast-checkpoint", "--log-level", "warn")
		time.Sleep(time.Duration(100+rnd.IntN(900)) * time.Millisecond)
		b.kill9()
		t.Logf("backup %d killed (had exited: %v)", i, b.cmd.ProcessState.Exited())
		l.waitGrowth(t, 10, time.Minute)
	}
	c.expect(0, "backup", "--repo", repo, "--source", pg.URL("postgres"), "--fast-checkpoint", "--log-level", "warn")
	stream.kill9() // once more, right after the backup
	stream = c.start(streamArgs(repo, pg)...)
	l.waitGrowth(t, 20, time.Minute)
	l.stop()
	t.Logf("backups: %s", time.Since(t0))
	t0 = time.Now()
	if code := stream.term(); code != 0 {
		t.Fatalf("streamer on SIGTERM: exit %d\n%s", code, stream.out.String())
	}

	// What the killed processes left is reported, then removed by expire.
	out, _ := c.expect(0, "verify", "--repo", repo, "--identity-file", key)
	var temps []string
	filepath.Walk(repo, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasPrefix(fi.Name(), ".tmp-") {
			rel, _ := filepath.Rel(repo, p)
			temps = append(temps, rel)
			old := time.Now().Add(-2 * time.Hour)
			os.Chtimes(p, old, old)
		}
		return nil
	})
	for _, tmp := range temps {
		mustContain(t, "verify's leftovers", out, tmp)
	}
	dry, _ := c.expect(0, "expire", "--repo", repo, "--keep-last", "5", "--dry-run")
	real, _ := c.expect(0, "expire", "--repo", repo, "--keep-last", "5")
	if counts(dry) != counts(real) {
		t.Fatalf("expire --dry-run said\n%s\nthe real run\n%s", dry, real)
	}
	out, _ = c.expect(0, "verify", "--repo", repo, "--identity-file", key)
	if strings.Contains(out, "leftover:") {
		t.Fatalf("leftovers after expire:\n%s", out)
	}
	t.Logf("verify after %d temporary files and the killed backups' leftovers were expired:\n%s", len(temps), out)

	t.Logf("verify and expire: %s", time.Since(t0))
	t0 = time.Now()
	pg.Grant(t, repo)
	restored := restoreAndStart(t, c, repo, key, pg)
	l.checkAcked(t, restored)
	t.Logf("restore: %s", time.Since(t0))
}

// counts is the "would delete"/"deleted" line of expire's output without
// its verb.
func counts(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if _, rest, ok := strings.Cut(line, "delete: "); ok {
			return rest
		}
		if _, rest, ok := strings.Cut(line, "deleted: "); ok {
			return rest
		}
	}
	return out
}
