package agent

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/jobs"
)

// EngineRunner runs the agent's jobs through the engines and the same
// job code as the commands.
type EngineRunner struct {
	Engines *engine.Registry
	Log     *slog.Logger
}

func (r EngineRunner) open(ctx context.Context, db Database, read bool) (*archive.Repository, engine.RepoRef, error) {
	ref := engine.RepoRef{URL: db.Repo, IdentityFile: db.IdentityFile, PassphraseFile: db.PassphraseFile}
	repo, err := jobs.OpenRepo(ctx, ref, read, r.Log.With("database", db.Name))
	return repo, ref, err
}

// job opens the repository and the engine's options for one of db's jobs.
func (r EngineRunner) job(ctx context.Context, db Database, cmd engine.Command, read bool) (engine.Engine, engine.Job, error) {
	eng, opts, fe := db.options(r.Engines, cmd)
	if fe != nil {
		return nil, engine.Job{}, errors.New(fe.key + ": " + fe.msg)
	}
	repo, ref, err := r.open(ctx, db, read)
	if err != nil {
		return nil, engine.Job{}, err
	}
	return eng, engine.Job{Repo: repo, RepoRef: ref, Log: r.Log.With("database", db.Name), Options: opts}, nil
}

// Stream implements Runner.
func (r EngineRunner) Stream(ctx context.Context, db Database, hooks StreamHooks) error {
	eng, job, err := r.job(ctx, db, engine.CmdStream, false)
	if err != nil {
		return err
	}
	flush := time.Duration(db.Stream.FlushInterval)
	if flush <= 0 {
		flush = time.Second
	}
	return jobs.Stream(ctx, eng, engine.StreamJob{Job: job, Source: db.Source, FlushInterval: flush,
		Durable: hooks.Progress, Observe: hooks.Observe, Heartbeat: hooks.Heartbeat})
}

// Backup implements Runner.
func (r EngineRunner) Backup(ctx context.Context, db Database) (BackupResult, error) {
	eng, job, err := r.job(ctx, db, engine.CmdBackup, false)
	if err != nil {
		return BackupResult{}, err
	}
	typ := db.Backup.Type
	if typ == "" {
		typ = "full"
	}
	rep, err := jobs.Backup(ctx, eng, engine.BackupJob{Job: job, Source: db.backupSource(), Type: typ, Jobs: max(db.Backup.Jobs, 4)})
	if err != nil {
		return BackupResult{}, err
	}
	st := rep.Manifest.Stats
	return BackupResult{ID: rep.Manifest.ID, Logical: st.Logical, NewStored: st.NewStored}, nil
}

// Expire implements Runner.
func (r EngineRunner) Expire(ctx context.Context, db Database) error {
	repo, _, err := r.open(ctx, db, false)
	if err != nil {
		return err
	}
	p := db.Retention.Policy()
	res, err := jobs.Expire(ctx, r.Engines, repo, p, time.Now(), false, "tidemark agent: expire")
	if err != nil {
		return err
	}
	r.Log.Info("expired", "database", db.Name, "policy", p.String(), "backups", len(res.Expired),
		"stream_objects", res.Streams.Objects, "chunk_objects", res.Chunks.Objects, "chunk_bytes", res.Chunks.Bytes)
	return nil
}

// Verify implements Runner.
func (r EngineRunner) Verify(ctx context.Context, db Database) error {
	repo, _, err := r.open(ctx, db, true)
	if err != nil {
		return err
	}
	log := r.Log.With("database", db.Name)
	rep, _, err := jobs.Verify(ctx, r.Engines, repo, log, nil)
	if err != nil {
		return err
	}
	for _, p := range rep.Problems {
		log.Error("verify problem", "problem", p)
	}
	return jobs.VerifyOutcome(repo, rep)
}

// Drill implements Runner: a random point with something to replay, as
// the drill command's --random-point.
func (r EngineRunner) Drill(ctx context.Context, db Database) (DrillResult, error) {
	repo, ref, err := r.open(ctx, db, true)
	if err != nil {
		return DrillResult{}, err
	}
	eng, err := r.Engines.ForRepo(ctx, repo)
	if err != nil {
		return DrillResult{}, err
	}
	_, opts, fe := db.options(r.Engines, engine.CmdDrill)
	if fe != nil {
		return DrillResult{}, errors.New(fe.key + ": " + fe.msg)
	}
	at, err := jobs.RandomPoint(ctx, eng, repo)
	if err != nil {
		return DrillResult{}, err
	}
	rep, err := jobs.Drill(ctx, eng, engine.DrillJob{Job: engine.Job{Repo: repo, RepoRef: ref, Log: r.Log.With("database", db.Name),
		Options: opts}, To: engine.Target{Time: at}, Random: true, Jobs: 4, Timeout: 30 * time.Minute})
	var res DrillResult
	if rep != nil {
		res = DrillResult{RTO: time.Duration(rep.RTOSeconds * float64(time.Second)), Problems: rep.Problems}
	}
	return res, err
}

// Repository implements Runner.
func (r EngineRunner) Repository(ctx context.Context, db Database) (RepoSummary, error) {
	repo, _, err := r.open(ctx, db, false)
	if err != nil {
		return RepoSummary{}, err
	}
	backups, err := repo.Backups(ctx)
	if err != nil && !errors.Is(err, archive.ErrNoIdentity) {
		return RepoSummary{}, err
	}
	var s RepoSummary
	for _, b := range backups {
		s.Logical += b.Logical
		if b.Finished.After(s.NewestBackup) {
			s.NewestBackup = b.Finished
			s.CompressionRatio = b.CompressionRatio()
		}
	}
	if _, s.Stored, err = repo.StoredSize(ctx, ""); err != nil {
		return s, err
	}
	for _, area := range []string{"packs/", "chunks/"} {
		_, n, err := repo.StoredSize(ctx, area)
		if err != nil {
			return s, err
		}
		s.BackupStored += n
	}
	return s, nil
}

// Status implements Runner.
func (r EngineRunner) Status(ctx context.Context, db Database) (*jobs.StatusReport, error) {
	repo, _, err := r.open(ctx, db, false)
	if err != nil {
		return nil, err
	}
	return jobs.Status(ctx, r.Engines, repo, time.Now())
}
