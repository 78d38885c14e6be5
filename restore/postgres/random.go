package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/restore"
	"github.com/tidemark/tidemark/wal"
)

// RandomTarget is a drill's random point with WAL to replay: an LSN
// between the oldest base's stop and the end of the archived WAL. An LSN,
// not a time: a time after the last archived commit is never reached
// (PostgreSQL stops recovery only at a commit past the target), while
// every archived LSN is.
func RandomTarget(ctx context.Context, repo *archive.Repository) (Target, error) {
	bases, err := restore.Bases(ctx, repo, "postgres")
	if err != nil {
		return Target{}, err
	}
	if len(bases) == 0 {
		return Target{}, fmt.Errorf("%w: the repository holds no PostgreSQL backup", restore.ErrUnreachable)
	}
	stop, err := wal.ParseLSN(bases[0].Stop)
	if err != nil {
		return Target{}, fmt.Errorf("backup %s: stop LSN %q: %w", bases[0].ID, bases[0].Stop, archive.ErrCorrupt)
	}
	g, err := wal.RepoGeometry(ctx, repo)
	if err != nil {
		return Target{}, err
	}
	st, err := wal.LoadState(ctx, repo.Store(), g)
	if err != nil {
		return Target{}, err
	}
	end := stop
	if tl := st.Latest(); tl != nil && tl.End > stop {
		end = tl.End
	}
	return Target{LSN: (stop + wal.LSN(rand.Uint64N(uint64(end-stop)+1))).String()}, nil
}
