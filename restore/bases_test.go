package restore

import (
	"context"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestBasesOldestFirstWithinASecond: two backups started in one second
// list by when they finished, not by their ids' random suffixes (a second
// backup right after a first must be the newer, the reference of an
// incremental and the base of a restore).
func TestBasesOldestFirstWithinASecond(t *testing.T) {
	r := testenv.NewRepo(t)
	ctx := context.Background()
	at := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	for _, m := range []*archive.Manifest{
		{ID: "20261206T000000Z-ffffff", Engine: "postgres", Type: "full", Started: at, Finished: at.Add(100 * time.Millisecond)},
		{ID: "20261206T000000Z-000000", Engine: "postgres", Type: "incremental", Started: at, Finished: at.Add(900 * time.Millisecond)},
	} {
		if err := r.Repository.CommitManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	bases, err := Bases(ctx, r.Repository, "postgres")
	if err != nil || len(bases) != 2 || bases[0].ID != "20261206T000000Z-ffffff" {
		t.Fatalf("bases %+v, %v: want the first finished first", bases, err)
	}
}
