package wal

import (
	"context"
	"errors"
	"fmt"

	"github.com/tidemark/tidemark/archive"
)

// Trim deletes archived WAL (segments and parts, on every timeline) that
// lies wholly before keepFrom, the start LSN of the oldest backup retention
// keeps: no restore can need it. History files are kept, they are tiny and
// every later timeline's recovery reads them. Oldest segments go first, so
// an interrupted trim leaves a contiguous archive.
func Trim(ctx context.Context, repo *archive.Repository, keepFrom LSN, dryRun bool) (archive.Trimmed, error) {
	var t archive.Trimmed
	g, err := RepoGeometry(ctx, repo)
	if err != nil {
		return t, err
	}
	limit := g.SegNo(keepFrom)
	var doomed []string
	// Listing order is timeline, then segment: oldest first within each
	// timeline, and older timelines' WAL ends before newer ones begin.
	err = repo.Store().List(ctx, walPrefix, "", func(o archive.ObjectInfo) error {
		n, ok := g.parseObject(o.Name)
		if ok && n.segno < limit {
			doomed = append(doomed, o.Name)
			t.Objects++
			t.Bytes += o.Size
		}
		return nil
	})
	if err != nil {
		return t, fmt.Errorf("trim WAL before %s: %w", keepFrom, err)
	}
	if len(doomed) > 0 {
		t.Detail = append(t.Detail, fmt.Sprintf("WAL before %s (segment %s): %d objects", keepFrom, g.FileName(1, limit)[8:], len(doomed)))
	}
	if dryRun {
		return t, nil
	}
	for _, name := range doomed {
		if err := repo.Store().Delete(ctx, name); err != nil && !errors.Is(err, archive.ErrNotExist) {
			return t, fmt.Errorf("trim WAL: delete %s: %w", name, err)
		}
	}
	return t, nil
}
