package restore

import (
	"context"

	"github.com/tidemark/tidemark/archive"
)

// Bases returns the catalog's summaries of engine's base backups, oldest
// first: what a planner chooses a base from before it reads one manifest.
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
	return bases, nil
}
