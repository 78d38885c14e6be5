// Package jobs runs what the commands and the agent both run — a stream,
// a backup, verify, expire, a drill, status — around an engine: the
// repository locks, the reports kept in the repository, the logging. The
// CLI parses flags and prints; the agent schedules; both call jobs.
package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/restore"
)

// maintenanceLock is held by backups, expire and whatever else must not
// run beside them; streams have a lock of their own per engine.
const maintenanceLock = "maintenance"

// Stream runs eng's streamer under its stream lock, so two streamers
// never write one repository, and keeps its heartbeat in the repository
// (archive.Heartbeat: streaming, reconnecting with the error, stopped),
// which status and the agent read.
func Stream(ctx context.Context, eng engine.Engine, job engine.StreamJob) error {
	info := eng.Info()
	return job.Repo.WithLock(ctx, info.StreamLock, archive.LockOptions{Purpose: "tidemark stream (" + info.Title + " " + info.Stream + ")"},
		func(ctx context.Context) error {
			b := newBeat(job.Repo, info, job.Source, job.Log, job.HeartbeatEvery)
			b.written = job.Heartbeat
			job.Observe = both(b.observe, job.Observe)
			job.Durable = both(b.durable, both(b.where, job.Durable))
			stop := b.run(ctx)
			err := eng.Stream(ctx, job)
			stop(err)
			return err
		})
}

// BackupTypes are the --type values.
var BackupTypes = []string{"full", "incremental", "differential"}

// Backup takes a base backup under the maintenance lock.
func Backup(ctx context.Context, eng engine.Engine, job engine.BackupJob) (*engine.BackupReport, error) {
	info := eng.Info()
	var rep *engine.BackupReport
	started := time.Now()
	err := job.Repo.WithLock(ctx, maintenanceLock, archive.LockOptions{Purpose: "tidemark backup (" + info.Title + ")"},
		func(ctx context.Context) error {
			t := track(ctx, job.Repo, job.Log, "backup", info.Name, job.Source)
			defer t.end(ctx)
			job.Progress = both(t.step, job.Progress)
			var err error
			rep, err = eng.Backup(ctx, job)
			return err
		})
	if err != nil {
		return nil, err
	}
	rep.Seconds = time.Since(started).Seconds()
	m := rep.Manifest
	job.Log.Info("base backup committed", "engine", info.Name, "backup", m.ID, "type", m.Type, "start", rep.Start, "stop", rep.Stop,
		"logical_bytes", m.Stats.Logical, "new_stored_bytes", m.Stats.NewStored, "seconds", rep.Seconds)
	return rep, nil
}

// Drill runs eng's drill and keeps its report in the repository, which
// status and the agent show. Problems the checks found fail the drill.
func Drill(ctx context.Context, eng engine.Engine, job engine.DrillJob) (*restore.DrillReport, error) {
	t := track(ctx, job.Repo, job.Log, "drill", eng.Info().Name, "")
	job.Progress = both(t.step, job.Progress)
	rep, err := eng.Drill(ctx, job)
	t.end(ctx)
	if rep == nil {
		return nil, err
	}
	if rep.Engine == "" {
		rep.Engine = eng.Info().Name
	}
	if err == nil && !rep.OK {
		err = fmt.Errorf("drill: %w: %d problems found (see the log)", archive.ErrVerifyFailed, rep.Problems)
	}
	if rep.Backup != "" {
		if perr := job.Repo.PutReport(ctx, "drill", rep.Started, rep); perr != nil && err == nil {
			err = fmt.Errorf("store the drill report: %w", perr)
		}
	}
	return rep, err
}

// Restore runs eng's restore, recorded in the repository as a running
// operation while it lasts.
func Restore(ctx context.Context, eng engine.Engine, job engine.RestoreJob) (*engine.RestoreReport, error) {
	info := eng.Info()
	t := track(ctx, job.Repo, job.Log, "restore", info.Name, job.Options.String(info.RestoreTarget))
	defer t.end(ctx)
	job.Progress = both(t.step, job.Progress)
	return eng.Restore(ctx, job)
}
