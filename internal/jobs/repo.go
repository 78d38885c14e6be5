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

// RandomPoint is a random moment between the end of the oldest backup and
// the newest change archived after it (or the newest backup's end, if
// later): what a drill with --random-point recovers to, so that even with
// one backup it replays something.
func RandomPoint(ctx context.Context, eng engine.Engine, repo *archive.Repository) (time.Time, error) {
	backups, err := repo.Backups(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if len(backups) == 0 {
		return time.Time{}, fmt.Errorf("drill: %w: the repository holds no backup", archive.ErrUnreachable)
	}
	oldest := backups[0]
	lo, hi := oldest.Finished, backups[len(backups)-1].Finished
	streams, err := eng.Status(ctx, repo)
	if err != nil {
		return time.Time{}, err
	}
	for _, s := range streams {
		if s.Pairs(oldest.Engine, oldest.Stream) && s.Latest != nil && s.Latest.After(hi) {
			hi = *s.Latest
		}
	}
	return lo.Add(time.Duration(rand.Int64N(int64(hi.Sub(lo)) + 1))), nil
}
