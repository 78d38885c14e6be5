package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/tidemark/tidemark/archive"
	storeall "github.com/tidemark/tidemark/archive/store/all"
	"github.com/tidemark/tidemark/internal/engine"
)

// OpenRepo opens the repository ref names with the keys its files hold;
// with read, a repository it cannot decrypt is refused at once instead of
// at the first object. Key files any user can read are warned about in log.
func OpenRepo(ctx context.Context, ref engine.RepoRef, read bool, log *slog.Logger) (*archive.Repository, error) {
	s, err := storeall.Open(ctx, ref.URL)
	if err != nil {
		return nil, err
	}
	keys, err := archive.LoadKeys(ref.IdentityFile, ref.PassphraseFile)
	if err != nil {
		return nil, err
	}
	for _, w := range keys.Warnings {
		log.Warn(w)
	}
	r, err := archive.Open(ctx, s, keys)
	if err != nil {
		return nil, err
	}
	if read && !r.CanRead() {
		return nil, archive.ErrNoIdentity
	}
	return r, nil
}

// RandomPoint is a random moment between the end of the oldest and of the
// newest backup: what a drill with --random-point recovers to.
func RandomPoint(ctx context.Context, repo *archive.Repository) (time.Time, error) {
	backups, err := repo.Backups(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if len(backups) == 0 {
		return time.Time{}, fmt.Errorf("drill: %w: the repository holds no backup", archive.ErrUnreachable)
	}
	lo, hi := backups[0].Finished, backups[len(backups)-1].Finished
	return lo.Add(time.Duration(rand.Int64N(int64(hi.Sub(lo)) + 1))), nil
}
