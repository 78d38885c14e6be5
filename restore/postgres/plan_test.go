package postgres

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/jackc/pglogrepl"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/all"
	"github.com/tidemark/tidemark/restore"
	"github.com/tidemark/tidemark/wal"
)

// TestChooseBaseFromCatalog: the base is chosen from the catalog's
// summaries alone; a manifest is read only for a summary without positions
// (a backup committed before manifests carried them).
func TestChooseBaseFromCatalog(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	summaries := func() []archive.BackupSummary {
		return []archive.BackupSummary{
			{ID: "b1", Engine: "postgres", Finished: t0, Stop: "0/3000000"},
			{ID: "b2", Engine: "postgres", Finished: t0.Add(10 * time.Minute), Stop: "0/5000000"},
			{ID: "b3", Engine: "postgres", Finished: t0.Add(20 * time.Minute), Stop: "0/7000000"},
		}
	}
	latest := &wal.Timeline{TLI: 1, End: pglogrepl.LSN(0x9000000)}
	for _, tc := range []struct {
		name    string
		target  Target
		want    string // the chosen base
		wantErr string // or a fragment of the error
	}{
		{"time between b1 and b2", Target{Time: t0.Add(5 * time.Minute)}, "b1", ""},
		{"time at b2's end", Target{Time: t0.Add(10 * time.Minute)}, "b2", ""},
		{"time after the newest", Target{Time: t0.Add(30 * time.Minute)}, "b3", ""},
		{"time before the oldest", Target{Time: t0.Add(-time.Minute)}, "", "before the first restorable point"},
		{"time in the future", Target{Time: time.Now().Add(time.Hour)}, "", "in the future"},
		{"lsn between b2 and b3", Target{LSN: "0/6000000"}, "b2", ""},
		{"lsn at b1's stop", Target{LSN: "0/3000000"}, "b1", ""},
		{"lsn before the oldest", Target{LSN: "0/1000000"}, "", "before the first restorable point"},
		{"lsn past the archive", Target{LSN: "0/A000000"}, "", "past the newest archived WAL"},
		{"latest", Target{Latest: true}, "b3", ""},
		{"xid", Target{XID: "1234"}, "b3", ""},
		{"name", Target{Name: "before_delete"}, "b3", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chooseBase(summaries(), tc.target, latest, func(b archive.BackupSummary) (string, error) {
				if b.Stop == "" {
					t.Fatalf("manifest of %s read although the catalog has its position", b.ID)
				}
				return b.Stop, nil
			})
			switch {
			case tc.wantErr != "":
				if !errors.Is(err, restore.ErrUnreachable) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("chose %v, error %v; want restore.ErrUnreachable saying %q", got, err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), "from the end of backup b1 (0/3000000)") {
					t.Fatalf("error %v does not give the window", err)
				}
			case err != nil:
				t.Fatalf("chose nothing (%v), want %s", err, tc.want)
			case got.ID != tc.want:
				t.Fatalf("chose %s, want %s", got.ID, tc.want)
			}
		})
	}

	// A summary without positions: its stop comes from its manifest, read
	// only when the choice or the window needs it.
	bases := summaries()
	bases[0].Stop, bases[1].Stop = "", ""
	var read []string
	stopLSN := func(b archive.BackupSummary) (string, error) {
		if b.Stop != "" {
			return b.Stop, nil
		}
		read = append(read, b.ID)
		return map[string]string{"b1": "0/3000000", "b2": "0/5000000"}[b.ID], nil
	}
	got, err := chooseBase(bases, Target{LSN: "0/6000000"}, latest, stopLSN)
	if err != nil || got.ID != "b2" || strings.Join(read, " ") != "b1 b2" {
		t.Fatalf("chose %v (%v), read the manifests of %q; want b2, having read b1 (the window) and b2", got, err, read)
	}
	read = nil
	if got, err := chooseBase(bases, Target{Latest: true}, latest, stopLSN); err != nil || got.ID != "b3" || len(read) != 1 {
		t.Fatalf("latest: chose %v (%v), read %q; want b3, having read b1 only (the window)", got, err, read)
	}
}

// readCounter is a store that records which manifests are read.
type readCounter struct {
	archive.Store
	mu        sync.Mutex
	manifests map[string]bool
}

func (c *readCounter) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if strings.HasPrefix(name, "backups/") {
		c.mu.Lock()
		c.manifests[strings.TrimPrefix(name, "backups/")] = true
		c.mu.Unlock()
	}
	return c.Store.Get(ctx, name, off, length)
}

// TestPlanReadsOnlyTheChosenManifest: with several bases, planning reads
// the catalog and the one manifest of the base it chooses.
func TestPlanReadsOnlyTheChosenManifest(t *testing.T) {
	p := newPITR(t)
	p.startStreaming()
	p.exec("CREATE TABLE t (x int)")
	var ids []string
	var between time.Time
	for i := range 3 {
		// Backup ids sort by their second: one second each keeps them in
		// the order they were taken.
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
		p.exec("INSERT INTO t VALUES ($1)", i)
		ids = append(ids, p.backup().Manifest.ID)
		if i == 0 {
			time.Sleep(20 * time.Millisecond)
			between = time.Now()
			time.Sleep(20 * time.Millisecond)
		}
	}
	p.waitArchived()
	p.stopWAL()
	ctx := context.Background()
	s, err := all.Open(ctx, p.repoURL)
	if err != nil {
		t.Fatal(err)
	}
	counter := &readCounter{Store: s}
	repo, err := archive.Open(ctx, counter, archive.Keys{Identities: []age.Identity{p.identity}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target Target
		want   string
	}{
		{Target{Latest: true}, ids[2]},
		{Target{Time: between}, ids[0]},
	} {
		counter.manifests = map[string]bool{}
		plan, err := PlanRestore(ctx, repo, tc.target)
		if err != nil {
			t.Fatalf("plan to %s: %v", tc.target, err)
		}
		if plan.Backup.ID != tc.want || plan.Meta.StopLSN == "" {
			t.Fatalf("plan to %s chose %s (meta %+v), want %s", tc.target, plan.Backup.ID, plan.Meta, tc.want)
		}
		if len(counter.manifests) != 1 || !counter.manifests[tc.want] {
			t.Fatalf("plan to %s read the manifests %v, want only %s's", tc.target, counter.manifests, tc.want)
		}
	}
}
