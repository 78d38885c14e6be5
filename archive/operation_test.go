package archive_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/tidemark/tidemark/archive"
)

// TestOperationRecords: an operation's newest record is its state, its
// older ones go, its end removes it; one that stopped being renewed is
// listed by verify as a leftover and removed by expire, while a live one
// stays. Reading them needs no key (status runs without one).
func TestOperationRecords(t *testing.T) {
	ctx := context.Background()
	id := identity(t)
	r, dir := newRepo(t, archive.InitOptions{Recipients: []string{id.Recipient().String()}})
	now := time.Now().UTC()
	live := archive.Operation{ID: "live-backup", Kind: "backup", Engine: "postgres", Holder: "db1/1", Started: now, Interval: 10}
	for i := range 3 {
		live.Updated, live.Done, live.Total = now.Add(time.Duration(i)*time.Second), int64(i*100), 1000
		if err := r.PutOperation(ctx, live); err != nil {
			t.Fatal(err)
		}
	}
	dead := archive.Operation{ID: "dead-restore", Kind: "restore", Holder: "db2/2", Started: now.Add(-time.Hour), Updated: now.Add(-time.Hour), Interval: 10}
	if err := r.PutOperation(ctx, dead); err != nil {
		t.Fatal(err)
	}
	// A process of this host killed with -9 is abandoned at once.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	killed := archive.Operation{ID: "killed-backup", Kind: "backup", Holder: fmt.Sprintf("%s/%d", host, gone.Process.Pid), Started: now, Updated: now, Interval: 10}
	if err := r.PutOperation(ctx, killed); err != nil {
		t.Fatal(err)
	}
	if !killed.Abandoned(now) || live.Abandoned(now) {
		t.Fatal("a dead local holder is not abandoned, or a live one is")
	}
	if err := r.PutOperation(ctx, archive.Operation{ID: "a/b"}); err == nil {
		t.Fatal("an id with a slash was taken")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "operations", "live-backup", "*"))
	if len(files) != 1 {
		t.Fatalf("records of the live operation: %v, want only the newest", files)
	}
	keyless, err := reopen(t, dir, archive.Keys{})
	if err != nil {
		t.Fatal(err)
	}
	ops, err := keyless.Operations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 3 || ops[0].ID != "dead-restore" || ops[2].ID != "live-backup" || ops[2].Done != 200 || ops[2].Stale(now.Add(2*time.Second)) || !ops[0].Stale(now) {
		t.Fatalf("operations = %+v", ops)
	}

	full, err := reopen(t, dir, archive.Keys{Identities: []age.Identity{id}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := full.Verify(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rep.Leftovers, "\n"); !strings.Contains(got, "operations/dead-restore/") || !strings.Contains(got, "operations/killed-backup/") || strings.Contains(got, "live-backup") {
		t.Fatalf("leftovers:\n%s", got)
	}
	res, err := r.Expire(ctx, archive.Policy{KeepLast: 1}, now, archive.ExpireOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ops, _ = r.Operations(ctx); res.Orphans != 2 || len(ops) != 1 || ops[0].ID != "live-backup" {
		t.Fatalf("after expire (%d orphans): %+v", res.Orphans, ops)
	}
	if err := r.EndOperation(ctx, "live-backup"); err != nil {
		t.Fatal(err)
	}
	if ops, _ = r.Operations(ctx); len(ops) != 0 {
		t.Fatalf("after its end: %+v", ops)
	}
}
