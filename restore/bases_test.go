package restore

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/archive"
)

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
