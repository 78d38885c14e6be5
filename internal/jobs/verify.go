package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/engine"
)

// VerifyRecord is the outcome kept in the repository: counts, no names.
type VerifyRecord struct {
	Job      string    `json:"job"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Objects  int64     `json:"objects"`
	Bytes    int64     `json:"bytes"`
	Backups  int       `json:"backups"`
	Problems int       `json:"problems"`
	OK       bool      `json:"ok"`
}

// Verify reads every object back (archive), asks every engine what stops
// its bases from restoring (each finds nothing in another engine's
// repository), adds the gaps streamers recorded, and keeps the outcome in
// the repository.
func Verify(ctx context.Context, reg *engine.Registry, repo *archive.Repository, log *slog.Logger,
	progress func(objects, bytes int64)) (*archive.VerifyReport, time.Duration, error) {
	start := time.Now()
	t := track(ctx, repo, log, "verify", "", "")
	defer t.end(ctx)
	rep, err := repo.Verify(ctx, func(objects, bytes int64) {
		t.step(engine.Step{Phase: "verify", Unit: "objects", Done: objects, Bytes: bytes})
		if progress != nil {
			progress(objects, bytes)
		}
	})
	if err != nil {
		return nil, 0, err
	}
	for _, e := range reg.Engines() {
		problems, err := e.Verify(ctx, repo)
		if err != nil {
			if ctx.Err() != nil {
				return nil, 0, err
			}
			// One unreadable object must not hide the rest: what stopped
			// this engine's checks is a problem like any other.
			problems = append(problems, fmt.Sprintf("%s checks stopped: %v", e.Info().Title, err))
		}
		rep.Problems = append(rep.Problems, problems...)
	}
	gaps, err := repo.Gaps(ctx)
	if err != nil {
		return nil, 0, err
	}
	for _, g := range gaps {
		rep.Problems = append(rep.Problems, fmt.Sprintf("recorded gap: %s stream stopped at %s on %s: %s", g.Engine, g.From, g.Detected.Format(time.RFC3339), g.Reason))
	}
	rep.Problems = unique(rep.Problems)
	elapsed := time.Since(start)
	log.Info("verify finished", "repository", repo.Store().Location(), "objects", rep.Objects,
		"bytes", rep.Bytes, "backups", rep.Backups, "problems", len(rep.Problems), "seconds", elapsed.Seconds())
	// A read-only repository (a restore host's credentials) cannot take the
	// record; the verification itself still stands.
	if err := repo.PutReport(ctx, "verify", start, VerifyRecord{Job: "verify", Started: start.UTC(), Seconds: elapsed.Seconds(),
		Objects: rep.Objects, Bytes: rep.Bytes, Backups: rep.Backups, Problems: len(rep.Problems), OK: rep.OK()}); err != nil {
		log.Warn("verify report not stored", "err", err)
	}
	return rep, elapsed, nil
}

// Repair writes again, under the maintenance lock, what verify found
// missing and intact objects can give back (refs, catalog entries, chunk
// indexes: archive.Repository.Repair), and returns what it wrote.
func Repair(ctx context.Context, repo *archive.Repository, log *slog.Logger) ([]string, error) {
	var done []string
	err := repo.WithLock(ctx, maintenanceLock, archive.LockOptions{Purpose: "tidemark verify --repair"}, func(ctx context.Context) error {
		var err error
		done, err = repo.Repair(ctx)
		return err
	})
	for _, d := range done {
		log.Info("repaired", "what", d)
	}
	return done, err
}

// VerifyOutcome turns a report with problems into an error (exit 3).
func VerifyOutcome(repo *archive.Repository, rep *archive.VerifyReport) error {
	if !rep.OK() {
		return fmt.Errorf("%w: %d problems in %s", archive.ErrVerifyFailed, len(rep.Problems), repo.Store().Location())
	}
	return nil
}

// unique drops repeats (an unreadable manifest is found by the object
// check and again by an engine's), keeping the order.
func unique(ss []string) []string {
	seen := map[string]bool{}
	out := ss[:0]
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
