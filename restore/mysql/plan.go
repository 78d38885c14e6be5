package mysql

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tidemark/tidemark/archive"
	mysqlbackup "github.com/tidemark/tidemark/basebackup/mysql"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/restore"
)

// Plan is what a restore will do, decided before anything is written.
type Plan struct {
	Backup *archive.Manifest
	Meta   mysqlbackup.Meta
	From   binlog.Position // where replay starts: the base's snapshot position
}

// PlanRestore picks the newest MySQL base backup that can reach the target
// and checks that the archived binlog covers the range from its position
// to the target; it writes nothing. Errors wrap restore.ErrUnreachable (with the
// recoverable window) or restore.ErrGap (with the missing range).
func PlanRestore(ctx context.Context, repo *archive.Repository, to binlog.Target) (*Plan, error) {
	ids, err := repo.ListManifests(ctx)
	if err != nil {
		return nil, err
	}
	var bases []*Plan
	for _, id := range ids {
		m, err := repo.ReadManifest(ctx, id)
		if err != nil {
			return nil, err
		}
		if m.Engine != "mysql" {
			continue
		}
		var meta mysqlbackup.Meta
		if err := json.Unmarshal(m.EngineMeta, &meta); err != nil {
			return nil, fmt.Errorf("backup %s: %w: engine metadata: %v", id, archive.ErrCorrupt, err)
		}
		bases = append(bases, &Plan{Backup: m, Meta: meta, From: meta.Position()})
	}
	if len(bases) == 0 {
		return nil, fmt.Errorf("%w: the repository holds no MySQL base backup", restore.ErrUnreachable)
	}
	var chosen *Plan
	for i := len(bases) - 1; i >= 0 && chosen == nil; i-- {
		ok, err := baseReaches(bases[i], to)
		if err != nil {
			return nil, err
		}
		if ok {
			chosen = bases[i]
		}
	}
	if chosen == nil {
		first := bases[0]
		return nil, fmt.Errorf("%w: %s is before the oldest base backup %s (consistent at %s, %s)", restore.ErrUnreachable, to,
			first.Backup.ID, first.From, first.Meta.SnapshotTime.Format(time.RFC3339))
	}
	if err := CheckBinlogCoverage(ctx, repo, chosen.From, to); err != nil {
		return nil, fmt.Errorf("from backup %s at %s: %w", chosen.Backup.ID, chosen.From, err)
	}
	return chosen, nil
}

// baseReaches reports whether replay from the base can stop at the target:
// the base must not already contain anything past it.
func baseReaches(b *Plan, to binlog.Target) (bool, error) {
	switch {
	case to.Latest:
		return true, nil
	case !to.Time.IsZero():
		// Binlog times have whole seconds: a snapshot taken within the
		// target's second holds only commits the target includes.
		return b.Meta.SnapshotTime.Unix() <= to.Time.Unix(), nil
	case !to.Position.IsZero():
		if b.From.File != to.Position.File {
			return b.From.File < to.Position.File, nil
		}
		return b.From.Pos <= to.Position.Pos, nil
	default:
		g, err := binlog.ParseMariaGTID(to.GTID)
		if err != nil {
			return false, fmt.Errorf("target GTID: %w", err)
		}
		st, err := binlog.ParseMariaState(b.From.GTID)
		if err != nil {
			return false, fmt.Errorf("backup %s: GTID position: %w", b.Backup.ID, err)
		}
		cur, ok := st[g.Domain]
		return !ok || cur.Seq <= g.Seq, nil
	}
}
