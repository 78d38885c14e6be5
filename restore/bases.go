package restore

import (
	"context"
	"sort"

	"github.com/tidemark/tidemark/archive"
)

// Bases returns the catalog's summaries of engine's base backups, oldest
// (first finished) first: what a planner chooses a base from before it
// reads one manifest. Ids sort by their start second only: two backups
// started within one second list in random order.
func Bases(ctx context.Context, repo *archive.Repository, engine string) ([]archive.BackupSummary, error) {
	backups, err := repo.Backups(ctx)
	if err != nil {
		return nil, err
	}
	var bases []archive.BackupSummary
	for _, b := range backups {
		if b.Engine == engine {
			bases = append(bases, b)
		}
	}
	sort.SliceStable(bases, func(i, j int) bool { return bases[i].Finished.Before(bases[j].Finished) })
	return bases, nil
}
