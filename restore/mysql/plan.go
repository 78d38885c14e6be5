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
	// Skipped names newer bases passed over as unusable, and why.
	Skipped []string
}

// PlanRestore picks the newest MySQL base backup that can reach the target
// and checks that the archived binlog covers the range from its position
// to the target; it writes nothing. The base is chosen from the
// repository's catalog (times and positions, unencrypted), so normally
// only the chosen base's manifest is read (see chooseBase for when
// another is). Errors wrap restore.ErrUnreachable (with the recoverable
// window) or restore.ErrGap (with the missing range).
func PlanRestore(ctx context.Context, repo *archive.Repository, to binlog.Target) (*Plan, error) {
	bases, err := restore.Bases(ctx, repo, "mysql")
	if err != nil {
		return nil, err
	}
	if len(bases) == 0 {
		return nil, fmt.Errorf("%w: the repository holds no MySQL base backup", restore.ErrUnreachable)
	}
	read := map[string]*Plan{} // manifests read so far, by backup id
	load := func(b archive.BackupSummary) (*Plan, error) {
		if p, ok := read[b.ID]; ok {
			return p, nil
		}
		m, err := restore.ReadBase(ctx, repo, b.ID)
		if err != nil {
			return nil, err
		}
		var meta mysqlbackup.Meta
		if err := json.Unmarshal(m.EngineMeta, &meta); err != nil {
			return nil, &restore.UnreadableBase{ID: b.ID, Err: fmt.Errorf("%w: engine metadata: %v", archive.ErrCorrupt, err)}
		}
		read[b.ID] = &Plan{Backup: m, Meta: meta, From: meta.Position()}
		return read[b.ID], nil
	}
	plan, skipped, err := restore.PassOver(bases, func(bases []archive.BackupSummary) (*Plan, error) {
		chosen, err := chooseBase(bases, to, func(b archive.BackupSummary) (time.Time, error) {
			p, err := load(b)
			if err != nil {
				return time.Time{}, err
			}
			return p.Meta.SnapshotTime, nil
		})
		if err != nil {
			return nil, err
		}
		if chosen == nil {
			first, err := load(bases[0])
			if err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %s is before the oldest base backup %s (consistent at %s, %s)", restore.ErrUnreachable, to,
				first.Backup.ID, first.From, first.Meta.SnapshotTime.Format(time.RFC3339))
		}
		return load(*chosen)
	})
	if err != nil {
		return nil, err
	}
	plan.Skipped = skipped
	if err := CheckBinlogCoverage(ctx, repo, plan.From, to); err != nil {
		return nil, fmt.Errorf("from backup %s at %s: %w", plan.Backup.ID, plan.From, err)
	}
	return plan, nil
}

// chooseBase picks the newest of the catalog's MySQL bases (oldest first)
// whose replay can stop at the target, or nil when none can. The catalog
// has each base's snapshot position (its Start), but not the snapshot's
// time, which only the manifest has (snapshotTime reads it). The snapshot
// was taken between the backup's start and finish, which the catalog has:
// a base finished by the target's second reaches it, one started after it
// does not, and only a base whose span holds that second needs its
// manifest read.
func chooseBase(bases []archive.BackupSummary, to binlog.Target, snapshotTime func(archive.BackupSummary) (time.Time, error)) (*archive.BackupSummary, error) {
	for i := len(bases) - 1; i >= 0; i-- {
		ok, err := reaches(bases[i], to, snapshotTime)
		if err != nil {
			return nil, err
		}
		if ok {
			return &bases[i], nil
		}
	}
	return nil, nil
}

// reaches reports whether replay from the base can stop at the target:
// the base must not already contain anything past it.
func reaches(b archive.BackupSummary, to binlog.Target, snapshotTime func(archive.BackupSummary) (time.Time, error)) (bool, error) {
	if to.Latest {
		return true, nil
	}
	if !to.Time.IsZero() {
		// Binlog times have whole seconds: a snapshot taken within the
		// target's second holds only commits the target includes.
		switch target := to.Time.Unix(); {
		case b.Finished.Unix() <= target:
			return true, nil
		case b.Started.Unix() > target:
			return false, nil
		}
		t, err := snapshotTime(b)
		return t.Unix() <= to.Time.Unix(), err
	}
	from, err := binlog.ParsePosition(b.Start)
	if err != nil {
		return false, fmt.Errorf("backup %s: start %q: %w", b.ID, b.Start, archive.ErrCorrupt)
	}
	if !to.Position.IsZero() {
		if from.File != to.Position.File {
			return from.File < to.Position.File, nil
		}
		return from.Pos <= to.Position.Pos, nil
	}
	g, err := binlog.ParseMariaGTID(to.GTID)
	if err != nil {
		return false, fmt.Errorf("target GTID: %w", err)
	}
	st, err := binlog.ParseMariaState(from.GTID)
	if err != nil {
		return false, fmt.Errorf("backup %s: GTID position: %w", b.ID, err)
	}
	cur, ok := st[g.Domain]
	return !ok || cur.Seq <= g.Seq, nil
}
