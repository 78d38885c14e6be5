package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/engine"
)

// Expire applies a retention policy under the maintenance lock: the
// archive decides which backups go and deletes their chunks; each
// engine trims its stream data from before its oldest kept backup.
func Expire(ctx context.Context, reg *engine.Registry, repo *archive.Repository, p archive.Policy, now time.Time, dryRun bool,
	purpose string) (*archive.ExpireResult, error) {
	var res *archive.ExpireResult
	err := repo.WithLock(ctx, maintenanceLock, archive.LockOptions{Purpose: purpose}, func(ctx context.Context) error {
		var err error
		res, err = repo.Expire(ctx, p, now, archive.ExpireOptions{DryRun: dryRun, TrimStreams: trimStreams(reg, repo)})
		return err
	})
	return res, err
}

func trimStreams(reg *engine.Registry, repo *archive.Repository) func(context.Context, map[string]archive.BackupSummary, bool) (archive.Trimmed, error) {
	return func(ctx context.Context, oldest map[string]archive.BackupSummary, dryRun bool) (archive.Trimmed, error) {
		var total archive.Trimmed
		for name, b := range oldest {
			eng, err := reg.Named(name)
			if err != nil {
				return total, fmt.Errorf("backup %s: %w", b.ID, err)
			}
			t, err := eng.Trim(ctx, repo, b, dryRun)
			if err != nil {
				return total, fmt.Errorf("trim %s stream: %w", eng.Info().Title, err)
			}
			total.Objects += t.Objects
			total.Bytes += t.Bytes
			total.Detail = append(total.Detail, t.Detail...)
		}
		return total, nil
	}
}

// EarliestKept is the end of the oldest backup expire kept: where the
// recoverable window now starts.
func EarliestKept(res *archive.ExpireResult) (time.Time, bool) {
	var e time.Time
	for _, d := range res.Decisions {
		if d.Keep && (e.IsZero() || d.Backup.Finished.Before(e)) {
			e = d.Backup.Finished
		}
	}
	return e, !e.IsZero()
}
