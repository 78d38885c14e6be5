package restore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

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

// UnreadableBase is a chosen base backup a restore cannot use: its
// manifest does not read back (corrupt, unsupported, gone), or chunks it
// references are nowhere in the repository. Planners pass over it to an
// older base, which with the stream after it usually reaches the same
// target.
type UnreadableBase struct {
	ID  string
	Err error
}

func (e *UnreadableBase) Error() string { return fmt.Sprintf("backup %s is unusable: %v", e.ID, e.Err) }
func (e *UnreadableBase) Unwrap() error { return e.Err }

// ReadBase reads a base's manifest and checks that every chunk it
// references can be found; what fails is an *UnreadableBase.
func ReadBase(ctx context.Context, repo *archive.Repository, id string) (*archive.Manifest, error) {
	m, err := repo.ReadManifest(ctx, id)
	if err == nil {
		err = repo.Locatable(ctx, m)
	}
	if err != nil {
		if ctx.Err() != nil || !unusable(err) {
			return nil, err
		}
		return nil, &UnreadableBase{ID: id, Err: err}
	}
	return m, nil
}

// unusable: the object itself is bad or missing (an outage or a wrong key
// is no reason to pass a base over).
func unusable(err error) bool {
	return errors.Is(err, archive.ErrCorrupt) || errors.Is(err, archive.ErrUnsupported) || errors.Is(err, archive.ErrNotExist)
}

// PassOver plans with bases and, each time the plan finds its base
// unusable (*UnreadableBase), again without that base, so a restore goes
// ahead from the newest intact base that reaches the target. skipped says
// which bases were passed over and why, for the plan's report; when no
// base is left, the error names them.
func PassOver[P any](bases []archive.BackupSummary, plan func([]archive.BackupSummary) (P, error)) (p P, skipped []string, err error) {
	for {
		p, err = plan(bases)
		var ub *UnreadableBase
		if !errors.As(err, &ub) {
			break
		}
		skipped = append(skipped, ub.Error())
		rest := bases[:0:0]
		for _, b := range bases {
			if b.ID != ub.ID {
				rest = append(rest, b)
			}
		}
		if len(rest) == len(bases) || len(rest) == 0 {
			break
		}
		bases = rest
	}
	if err != nil && len(skipped) > 0 {
		err = fmt.Errorf("%w (passed over: %s)", err, strings.Join(skipped, "; "))
	}
	return p, skipped, err
}
