package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"

	"github.com/tidemark/tidemark/archive"
	pgbackup "github.com/tidemark/tidemark/basebackup/postgres"
	"github.com/tidemark/tidemark/wal"
)

// VerifyWAL lists what breaks restorability in a PostgreSQL
// repository: base backups whose own WAL range is not archived, incremental
// backups whose reference is gone (each link of every chain), and holes
// in the archived WAL after the oldest base backup's start (the WAL before
// it is never needed).
func VerifyWAL(ctx context.Context, repo *archive.Repository) ([]string, error) {
	src, err := repo.Source(ctx)
	if errors.Is(err, archive.ErrNotExist) {
		return nil, nil
	}
	if err != nil || src.Engine != "postgres" {
		return nil, err
	}
	g, err := wal.RepoGeometry(ctx, repo)
	if err != nil {
		return nil, err
	}
	state, err := wal.LoadState(ctx, repo.Store(), g)
	if err != nil {
		return nil, err
	}
	ids, err := repo.ListManifests(ctx)
	if err != nil {
		return nil, err
	}
	var problems []string
	oldest := pglogrepl.LSN(0)
	committed := map[string]bool{}
	for _, id := range ids {
		committed[id] = true
	}
	for _, id := range ids {
		m, err := repo.ReadManifest(ctx, id)
		if errors.Is(err, archive.ErrNotExist) {
			continue // expired since the listing
		}
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		var meta pgbackup.Meta
		if m.Engine != "postgres" || json.Unmarshal(m.EngineMeta, &meta) != nil {
			continue
		}
		if ref := meta.IncrementalFrom; ref != "" && !committed[ref] {
			problems = append(problems, fmt.Sprintf("backup %s: it is incremental against backup %s, which is not in the repository: it cannot be restored", id, ref))
		}
		from, to := mustLSN(meta.StartLSN), mustLSN(meta.StopLSN)
		if !rangeArchived(state, g, meta.StartTimeline, from, to) {
			problems = append(problems, fmt.Sprintf("backup %s: its WAL %s–%s on timeline %d is not all archived: it cannot be restored",
				id, meta.StartLSN, meta.StopLSN, meta.StartTimeline))
		}
		if oldest == 0 || from < oldest {
			oldest = from
		}
	}
	for _, tl := range state.Timelines {
		for _, gap := range tl.Gaps {
			if gap.To > oldest {
				problems = append(problems, "WAL missing on "+gap.String())
			}
		}
	}
	return problems, nil
}

// rangeArchived reports whether [from, to) on tli is archived without holes.
func rangeArchived(st *wal.State, g wal.Geometry, tli uint32, from, to pglogrepl.LSN) bool {
	for _, tl := range st.Timelines {
		if tl.TLI != tli {
			continue
		}
		if tl.Start > g.SegStart(g.SegNo(from)) || tl.End < to {
			return false
		}
		for _, gap := range tl.Gaps {
			if gap.From < to && gap.To > from {
				return false
			}
		}
		return true
	}
	return false
}
