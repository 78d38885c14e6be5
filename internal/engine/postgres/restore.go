package postgres

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/progress"
	"github.com/tidemark/tidemark/restore"
	pgrestore "github.com/tidemark/tidemark/restore/postgres"
)

// target reads the restore target: the common one or --to-lsn/--to-xid/--to-name.
func target(job engine.RestoreJob) pgrestore.Target {
	o := job.Options
	return pgrestore.Target{Latest: job.To.Latest, Time: job.To.Time, LSN: o.String("to-lsn"), XID: o.String("to-xid"), Name: o.String("to-name")}
}

// Plan implements engine.Engine.
func (*Engine) Plan(ctx context.Context, job engine.RestoreJob) (*engine.Plan, error) {
	p, err := pgrestore.PlanRestore(ctx, job.Repo, target(job))
	if err != nil {
		return nil, err
	}
	return plan(p), nil
}

func plan(p *pgrestore.Plan) *engine.Plan {
	return &engine.Plan{Backup: archive.SummaryOf(p.Backup), From: p.WALFrom.String(), To: p.WALUntil.String(), Skipped: p.Skipped,
		Lines:  []string{fmt.Sprintf("WAL %s – %s, timeline %d", p.WALFrom, p.WALUntil, p.Timeline)},
		Detail: map[string]any{"wal_from": p.WALFrom.String(), "wal_until": p.WALUntil.String(), "timeline": p.Timeline}}
}

// Restore implements engine.Engine.
func (e *Engine) Restore(ctx context.Context, job engine.RestoreJob) (*engine.RestoreReport, error) {
	o := job.Options
	fetch, err := fetchCommand(job.RepoRef)
	if err != nil {
		return nil, err
	}
	owner, err := serverUser(o.String("run-as"))
	if err != nil {
		return nil, err
	}
	tsMap, err := tablespaceMap(o.Strings("tablespace-map"))
	if err != nil {
		return nil, err
	}
	dir := o.String("target-dir")
	to := target(job)
	started := time.Now()
	p, err := pgrestore.Restore(ctx, pgrestore.Config{Repo: job.Repo, TargetDir: dir, Target: to, Timeline: o.String("timeline"),
		Jobs: job.Jobs, TablespaceMap: tsMap, Delta: o.Bool("delta"), Exclusive: o.Bool("exclusive"), Fetch: &fetch, Owner: owner, Log: job.Log,
		Progress: func(done, total int64) {
			job.Report(engine.Step{Phase: "restore", Unit: "bytes", Done: done, Total: total})
		}})
	if err != nil {
		return nil, err
	}
	rep := &engine.RestoreReport{Plan: *plan(p), Detail: map[string]any{"target_dir": dir, "recovery_target": to.String()}}
	rep.Lines = append(rep.Lines, fmt.Sprintf("restored backup %s into %s in %.1fs", p.Backup.ID, dir, time.Since(started).Seconds()),
		fmt.Sprintf("recovery target: %s (archived WAL reaches %s on timeline %d)", to, p.WALUntil, p.Timeline))
	if len(p.Placed) > 0 {
		rep.Lines = append(rep.Lines, fmt.Sprintf("restore_command runs a copy of tidemark (and the key file) in %s, where %s can reach them: keep it while the server recovers or runs as a standby",
			pgrestore.KitDir(dir), userOf(owner)))
		rep.Detail["restore_command_kit"] = pgrestore.KitDir(dir)
	}
	if o.Bool("delta") {
		rep.Lines = append(rep.Lines, fmt.Sprintf("delta: kept %s already on disk, fetched %s", progress.FormatBytes(p.Kept), progress.FormatBytes(p.Fetched)))
		rep.Detail["delta_kept_bytes"], rep.Detail["delta_fetched_bytes"] = p.Kept, p.Fetched
	}
	if !o.Bool("start") {
		rep.Lines = append(rep.Lines, "start PostgreSQL on it to recover and promote; restore_command fetches WAL from the repository")
		return rep, nil
	}
	binDir := o.String("pg-bindir")
	if binDir == "" {
		if binDir, err = pgrestore.BinDir(p.Meta.ServerVersion); err != nil {
			return nil, err
		}
	}
	port, timeout := o.Int("port"), o.Duration("start-timeout")
	if timeout <= 0 {
		timeout = time.Hour
	}
	job.Log.Info("starting PostgreSQL on the restored directory: replaying WAL from the repository", "port", port)
	total := replaySegments(p, to)
	rec, err := pgrestore.StartRestored(ctx, dir, binDir, port, timeout, owner, func(n int) {
		job.Report(engine.Step{Phase: "replay", Unit: "WAL segments", Done: int64(n), Total: total})
	})
	if err != nil {
		return nil, err
	}
	rep.Lines = append(rep.Lines, fmt.Sprintf("recovered and promoted in %.1fs (%d WAL segments from the repository); the server runs on port %d",
		rec.Took.Seconds(), rec.Segments, port), rec.StoppedAt)
	if rec.LastCommit != "" {
		rep.Lines = append(rep.Lines, rec.LastCommit)
	}
	rep.Lines = append(rep.Lines, "log: "+rec.LogFile)
	rep.Detail["port"], rep.Detail["stopped_at"], rep.Detail["recovery_seconds"] = port, rec.StoppedAt, rec.Took.Seconds()
	rep.Detail["wal_segments_replayed"] = rec.Segments
	return rep, nil
}

// replaySegments is how many WAL segments recovery will fetch when the end
// is known (everything archived, or an LSN); 0 (unknown) for a time, xid
// or name target, which PostgreSQL finds only as it replays.
func replaySegments(p *pgrestore.Plan, to pgrestore.Target) int64 {
	end := p.WALUntil
	switch {
	case to.LSN != "":
		lsn, err := pglogrepl.ParseLSN(to.LSN)
		if err != nil || lsn > end {
			return 0
		}
		end = lsn
	case !to.Latest:
		return 0
	}
	seg := pglogrepl.LSN(p.Meta.WALSegmentSize)
	if seg == 0 || end < p.WALFrom {
		return 0
	}
	return int64(end/seg-p.WALFrom/seg) + 1
}

// Drill implements engine.Engine.
func (*Engine) Drill(ctx context.Context, job engine.DrillJob) (*restore.DrillReport, error) {
	o := job.Options
	as, err := serverUser(o.String("run-as"))
	if err != nil {
		return nil, err
	}
	fetch, err := fetchCommand(job.RepoRef)
	if err != nil {
		return nil, err
	}
	to := pgrestore.Target{Latest: job.To.Time.IsZero(), Time: job.To.Time}
	if job.Random {
		if to, err = pgrestore.RandomTarget(ctx, job.Repo); err != nil {
			return nil, err
		}
	}
	return pgrestore.Drill(ctx, pgrestore.DrillConfig{Repo: job.Repo, Target: to, Fetch: fetch, WorkDir: o.String("workdir"),
		As: as, BinDir: o.String("pg-bindir"), User: o.String("db-user"), Jobs: job.Jobs, Timeout: job.Timeout, Log: job.Log})
}

// fetchCommand is the restore_command for a restored cluster: this
// executable and the repository settings, with key files by absolute path
// — never a key or passphrase inline.
func fetchCommand(ref engine.RepoRef) (pgrestore.FetchCommand, error) {
	self, err := os.Executable()
	if err != nil {
		return pgrestore.FetchCommand{}, err
	}
	return pgrestore.FetchCommand{Binary: self, Repo: ref.URL, IdentityFile: ref.IdentityFile, PassphraseFile: ref.PassphraseFile}.Absolute()
}

// serverUser is the OS user a restored server runs as: as root, --run-as
// (default postgres), since PostgreSQL refuses to run as root; otherwise
// the current user (nil).
func serverUser(runAs string) (*restore.OSUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	if runAs == "" {
		runAs = "postgres"
	}
	u, err := restore.LookupOSUser(runAs)
	if err != nil {
		return nil, fmt.Errorf("%w (as root, name the OS user the restored server runs as with --run-as)", err)
	}
	return u, nil
}

func userOf(u *restore.OSUser) string {
	if u == nil {
		return "you"
	}
	return u.Name
}
