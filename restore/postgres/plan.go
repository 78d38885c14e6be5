package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/tidemark/tidemark/archive"
	pgbackup "github.com/tidemark/tidemark/basebackup/postgres"
	"github.com/tidemark/tidemark/restore"
	"github.com/tidemark/tidemark/wal"
)

// Plan is what a restore will do, decided before anything is written.
type Plan struct {
	Backup *archive.Manifest
	Meta   pgbackup.Meta
	// Chain: the backups an incremental Backup was taken against, newest
	// first, down to a full one; its files are rebuilt from them.
	Chain    []*archive.Manifest
	WALFrom  pglogrepl.LSN
	WALUntil pglogrepl.LSN // newest archived WAL on the newest timeline
	Timeline uint32
	// Kept and Fetched count file bytes a delta restore kept and fetched.
	Kept, Fetched int64
	// Placed are the copies of tidemark and the key files a restore put
	// in KitDir for the restored server's OS user (none when it could run
	// the originals).
	Placed []string
	// Skipped names newer bases passed over as unusable (a corrupt
	// manifest, chunks missing), and why.
	Skipped []string
}

// PlanRestore picks the newest base backup that can reach the target and
// checks that the archived WAL is continuous from it onwards; it writes
// nothing. The base is chosen from the repository's catalog (times and
// positions, unencrypted), so only the chosen base's manifest is read.
// Errors wrap restore.ErrUnreachable or restore.ErrGap with the window or
// range.
func PlanRestore(ctx context.Context, repo *archive.Repository, target Target) (*Plan, error) {
	g, err := wal.RepoGeometry(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("repository has no PostgreSQL history: %w", err)
	}
	state, err := wal.LoadState(ctx, repo.Store(), g)
	if err != nil {
		return nil, err
	}
	bases, err := restore.Bases(ctx, repo, "postgres")
	if err != nil {
		return nil, err
	}
	latest := state.Latest()
	if len(bases) == 0 || latest == nil {
		return nil, fmt.Errorf("%w: the repository holds %d base backups and %s", restore.ErrUnreachable, len(bases), walSummary(state))
	}
	p, skipped, err := restore.PassOver(bases, func(bases []archive.BackupSummary) (*Plan, error) {
		chosen, err := chooseBase(bases, target, latest, func(b archive.BackupSummary) (string, error) {
			if b.Stop != "" {
				return b.Stop, nil
			}
			// Committed before manifests carried positions: the catalog
			// entry was summarized from a manifest without them.
			_, meta, err := readBase(ctx, repo, b.ID)
			return meta.StopLSN, err
		})
		if err != nil {
			return nil, err
		}
		m, meta, err := readBase(ctx, repo, chosen.ID)
		if err != nil {
			return nil, err
		}
		chain, err := loadChain(ctx, repo, m, meta)
		if err != nil {
			return nil, err
		}
		start, _ := pglogrepl.ParseLSN(meta.StartLSN)
		p := &Plan{Backup: m, Meta: meta, Chain: chain, WALFrom: start, WALUntil: latest.End, Timeline: latest.TLI}
		return p, checkContinuity(state, g, p)
	})
	if err != nil {
		return nil, err
	}
	p.Skipped = skipped
	return p, nil
}

// chooseBase picks, from the catalog's summaries of PostgreSQL bases
// (oldest first), the newest that can reach target: for a time, the newest
// finished by then; for an LSN, the newest consistent at or before it; else
// the newest (PostgreSQL checks xid and name targets as it recovers).
// stopLSN says where a base becomes consistent.
func chooseBase(bases []archive.BackupSummary, target Target, latest *wal.Timeline, stopLSN func(archive.BackupSummary) (string, error)) (*archive.BackupSummary, error) {
	oldestStop, err := stopLSN(bases[0])
	if err != nil {
		return nil, err
	}
	window := fmt.Sprintf("recoverable window: from the end of backup %s (%s) to %s on timeline %d",
		bases[0].ID, oldestStop, latest.End, latest.TLI)
	var chosen *archive.BackupSummary
	for i := len(bases) - 1; i >= 0 && chosen == nil; i-- {
		b := &bases[i]
		switch {
		case !target.Time.IsZero():
			if !b.Finished.After(target.Time) {
				chosen = b
			}
		case target.LSN != "":
			lsn, err := pglogrepl.ParseLSN(target.LSN)
			if err != nil {
				return nil, fmt.Errorf("target LSN %q: %w", target.LSN, err)
			}
			s, err := stopLSN(*b)
			if err != nil {
				return nil, err
			}
			if stop, _ := pglogrepl.ParseLSN(s); stop <= lsn {
				chosen = b
			}
			if i == len(bases)-1 && lsn > latest.End {
				return nil, fmt.Errorf("%w: LSN %s is past the newest archived WAL; %s", restore.ErrUnreachable, lsn, window)
			}
		default:
			chosen = b // latest, xid, name: the newest base; PostgreSQL checks the rest
		}
	}
	if chosen == nil {
		return nil, fmt.Errorf("%w: %s is before the first restorable point; %s", restore.ErrUnreachable, target, window)
	}
	if !target.Time.IsZero() && target.Time.After(time.Now()) {
		return nil, fmt.Errorf("%w: %s is in the future; %s", restore.ErrUnreachable, target, window)
	}
	return chosen, nil
}

// loadChain reads the manifests of the backups an incremental depends on,
// newest first, down to the full one; nil for a full backup.
func loadChain(ctx context.Context, repo *archive.Repository, m *archive.Manifest, meta pgbackup.Meta) ([]*archive.Manifest, error) {
	var chain []*archive.Manifest
	seen := map[string]bool{m.ID: true}
	for from, id := meta.IncrementalFrom, m.ID; from != ""; {
		if seen[from] {
			return nil, fmt.Errorf("backup %s: %w: its chain of references loops at %s", m.ID, archive.ErrCorrupt, from)
		}
		seen[from] = true
		ref, refMeta, err := readBase(ctx, repo, from)
		if errors.Is(err, archive.ErrNotExist) {
			err = fmt.Errorf("backup %s: %w: it is incremental against backup %s, which is not in the repository", id, archive.ErrCorrupt, from)
		}
		if err != nil {
			// Unusable without its reference: the incremental is passed over.
			var ub *restore.UnreadableBase
			if errors.As(err, &ub) || errors.Is(err, archive.ErrCorrupt) {
				return nil, &restore.UnreadableBase{ID: m.ID, Err: fmt.Errorf("its chain of references: %w", err)}
			}
			return nil, err
		}
		chain = append(chain, ref)
		from, id = refMeta.IncrementalFrom, ref.ID
	}
	return chain, nil
}

// readBase reads a base backup's manifest and its PostgreSQL metadata.
func readBase(ctx context.Context, repo *archive.Repository, id string) (*archive.Manifest, pgbackup.Meta, error) {
	var meta pgbackup.Meta
	m, err := restore.ReadBase(ctx, repo, id)
	if err != nil {
		return nil, meta, err
	}
	if err := json.Unmarshal(m.EngineMeta, &meta); err != nil {
		return nil, meta, &restore.UnreadableBase{ID: id, Err: fmt.Errorf("%w: engine metadata: %v", archive.ErrCorrupt, err)}
	}
	return m, meta, nil
}

func walSummary(st *wal.State) string {
	tl := st.Latest()
	if tl == nil {
		return "no archived WAL"
	}
	return fmt.Sprintf("WAL to %s on timeline %d", tl.End, tl.TLI)
}

// checkContinuity fails with restore.ErrGap naming the first hole in the
// WAL from the base's start onwards, on its timeline and every later one.
func checkContinuity(st *wal.State, g wal.Geometry, p *Plan) error {
	var base *wal.Timeline
	for _, tl := range st.Timelines {
		if tl.TLI == p.Meta.StartTimeline {
			base = tl
		}
	}
	if base == nil || base.Start > g.SegStart(g.SegNo(p.WALFrom)) || base.End < mustLSN(p.Meta.StopLSN) {
		return fmt.Errorf("%w: the WAL of backup %s (%s–%s on timeline %d) is not in the archive", restore.ErrGap,
			p.Backup.ID, p.Meta.StartLSN, p.Meta.StopLSN, p.Meta.StartTimeline)
	}
	for _, tl := range st.Timelines {
		if tl.TLI < p.Meta.StartTimeline {
			continue
		}
		for _, gap := range tl.Gaps {
			if tl.TLI > p.Meta.StartTimeline || gap.To > p.WALFrom {
				return fmt.Errorf("%w: WAL missing on %s (needed from backup %s at %s onwards)", restore.ErrGap, gap, p.Backup.ID, p.Meta.StartLSN)
			}
		}
	}
	return nil
}

func mustLSN(s string) pglogrepl.LSN {
	l, _ := pglogrepl.ParseLSN(s)
	return l
}
