package faults

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/jobs"
	"github.com/tidemark/tidemark/internal/testenv"
)

// smallDisk mounts a tmpfs of size under a fresh directory: a real file
// system that fills up. It needs root (tests run as root in CI); when the
// mount is not allowed the test fails under CI and is skipped elsewhere.
func smallDisk(t *testing.T, size string) (dir string, grow func(size string)) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "disk")
	must(t, os.Mkdir(dir, 0o755))
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "tidemark-test", dir).CombinedOutput(); err != nil {
		testenv.Unavailable(t, "a small tmpfs for a full disk (mounting needs root)", fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out))))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir, func(size string) {
		t.Helper()
		if out, err := exec.Command("mount", "-o", "remount,size="+size, dir).CombinedOutput(); err != nil {
			t.Fatalf("grow the disk: %v\n%s", err, out)
		}
	}
}

// TestFullDisk: the file store fills up under a synchronous streamer.
// Commits wait (none is acknowledged that is not durable), status shows
// the streamer down with the disk's error, and once there is room again
// streaming resumes by itself and a restore holds every acknowledged
// commit.
func TestFullDisk(t *testing.T) {
	begin := time.Now()
	disk, grow := smallDisk(t, "24m")
	pg := syncPostgres(t)
	c := newCLI(t)
	repo := filepath.Join(disk, "repo")
	key, recipient := keyFile(t, pg)
	c.expect(0, "init", "--repo", repo, "--recipient", recipient)
	stream := c.start(streamArgs(repo, pg)...)
	l := startLoad(t, pg)
	l.waitGrowth(t, 10, time.Minute)
	c.expect(0, "backup", "--repo", repo, "--source", pg.URL("postgres"), "--fast-checkpoint")
	// Something else fills the disk (another process, a runaway log).
	f, err := os.Create(filepath.Join(disk, "filler"))
	must(t, err)
	zeros := make([]byte, 1<<20)
	for {
		if _, err := f.Write(zeros); err != nil {
			break
		}
	}
	f.Close()
	var st jobs.StatusReport
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		out, _, code := c.run("status", "--repo", repo, "--json")
		if code == 0 && json.Unmarshal([]byte(out), &st) == nil && len(st.Streamers) == 1 &&
			strings.Contains(st.Streamers[0].Error, "no space left on device") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed the full disk: %+v\nstreamer:\n%s", st.Streamers, stream.out.String())
		}
	}
	t.Logf("status while full (%s in): %s", time.Since(begin).Round(time.Second), st.Streamers[0].Summary)
	n := l.count()
	time.Sleep(time.Second)
	if grew := l.count() - n; grew > 1 {
		t.Fatalf("%d commits acknowledged while the repository's disk was full", grew)
	}
	if stream.exited() {
		t.Fatalf("the streamer gave up on a full disk:\n%s", stream.out.String())
	}
	grow("512m")
	l.waitGrowth(t, 10, time.Minute)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, _ := c.expect(0, "status", "--repo", repo)
		if strings.Contains(out, "streaming since") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status after the disk grew:\n%s", out)
		}
	}
	l.stop()
	if code := stream.term(); code != 0 {
		t.Fatalf("streamer: exit %d\n%s", code, stream.out.String())
	}
	t.Logf("streaming resumed and stopped %s in", time.Since(begin).Round(time.Second))
	pg.Grant(t, repo)
	l.checkAcked(t, restoreAndStart(t, c, repo, key, pg))
}
