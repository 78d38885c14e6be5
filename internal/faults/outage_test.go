package faults

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/storeenv"
)

// TestObjectStoreOutages: MinIO is killed for a few seconds while the
// streamer archives under synchronous load, while a base backup runs and
// while a restore reads. The streamer rides it out (its commits wait,
// none is lost), the backup and the restore complete, and a verify on S3
// prints no SDK chatter.
func TestObjectStoreOutages(t *testing.T) {
	m, err := storeenv.StartMinIO()
	if err != nil {
		testenv.Unavailable(t, "MinIO", err)
	}
	t.Cleanup(m.Stop)
	m.SetEnv(t) // for the restored server's restore_command too
	t.Setenv("AWS_CA_BUNDLE", "")
	pg := syncPostgres(t)
	c := newCLI(t, m.Env()...)
	repo := "s3://" + m.NewBucket(t) + "/pg"
	key, recipient := keyFile(t, pg)
	c.expect(0, "init", "--repo", repo, "--recipient", recipient)
	stream := c.start(streamArgs(repo, pg)...)
	l := startLoad(t, pg)
	l.waitGrowth(t, 20, time.Minute)

	outage := func(what string, after, lasting time.Duration) chan error {
		back := make(chan error, 1)
		go func() {
			time.Sleep(after)
			m.Kill()
			t.Logf("MinIO down %s into %s", after, what)
			time.Sleep(lasting)
			back <- m.Restart()
		}()
		return back
	}
	// During streaming.
	back := outage("streaming", 0, 5*time.Second)
	must(t, <-back)
	l.waitGrowth(t, 20, time.Minute)
	if stream.exited() {
		t.Fatalf("the streamer gave up during a 5 s outage:\n%s", stream.out.String())
	}
	// During a backup: enough data that it is still uploading when MinIO dies.
	pg.Exec(t, "CREATE TABLE bulk AS SELECT g, (SELECT string_agg(md5(random()::text || s.i), '') FROM generate_series(1, 24) s(i) WHERE g > 0) AS v FROM generate_series(1, 60000) g")
	// Early: a backup of this size now takes under a second. Whether MinIO
	// dies before the backup's first upload or during its uploads, the
	// backup must wait it out and succeed.
	back = outage("a backup", 300*time.Millisecond, 5*time.Second)
	started := time.Now()
	_, errs := c.expect(0, "backup", "--repo", repo, "--source", pg.URL("postgres"), "--fast-checkpoint", "--jobs", "4")
	if took := time.Since(started); took < 5*time.Second {
		t.Fatalf("the backup took %s: it finished before the outage could matter", took)
	}
	must(t, <-back)
	if strings.Contains(errs, "retry quota") {
		t.Fatalf("backup output: %s", errs)
	}
	l.waitGrowth(t, 20, time.Minute)
	l.stop()
	if code := stream.term(); code != 0 {
		t.Fatalf("streamer: exit %d\n%s", code, stream.out.String())
	}
	// During a restore.
	dir := filepath.Join(t.TempDir(), "restored")
	back = outage("a restore", 300*time.Millisecond, 4*time.Second)
	started = time.Now()
	c.expect(0, "restore", "--repo", repo, "--identity-file", key, "--latest", "--target-dir", dir)
	if took := time.Since(started); took < 4*time.Second {
		t.Fatalf("the restore took %s: it finished before the outage could matter", took)
	}
	must(t, <-back)
	l.checkAcked(t, testenv.NewPostgreSQL(t, testenv.PostgresOptions{DataDir: dir}))

	out, errs := c.expect(0, "verify", "--repo", repo, "--identity-file", key)
	if strings.Contains(errs, "SDK") || strings.Contains(errs, "checksum") {
		t.Fatalf("verify on S3 printed SDK lines:\n%s", errs)
	}
	t.Logf("verify: %s", out)
}
