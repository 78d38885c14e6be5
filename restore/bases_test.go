package restore

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

// TestPassOverUnusableBases: a plan that finds its base unusable is tried
// again without it, down to an intact one; the skipped bases are named.
// When none is left the error says which were passed over.
func TestPassOverUnusableBases(t *testing.T) {
	bases := []archive.BackupSummary{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	bad := map[string]bool{"c": true, "b": true}
	newest := func(bs []archive.BackupSummary) (string, error) {
		id := bs[len(bs)-1].ID
		if bad[id] {
			return "", &UnreadableBase{ID: id, Err: fmt.Errorf("manifest backups/%s: %w", id, archive.ErrCorrupt)}
		}
		return id, nil
	}
	got, skipped, err := PassOver(bases, newest)
	if err != nil || got != "a" || len(skipped) != 2 || !strings.Contains(skipped[0], "backups/c") {
		t.Fatalf("PassOver = %q, %v, %v", got, skipped, err)
	}
	bad["a"] = true
	_, _, err = PassOver(bases, newest)
	if !errors.Is(err, archive.ErrCorrupt) || !strings.Contains(err.Error(), "passed over") {
		t.Fatalf("every base unusable: %v", err)
	}
	// Another failure (a gap) is not passed over.
	_, skipped, err = PassOver(bases, func([]archive.BackupSummary) (string, error) { return "", ErrGap })
	if !errors.Is(err, ErrGap) || len(skipped) != 0 {
		t.Fatalf("a gap: %v, %v", skipped, err)
	}
}
