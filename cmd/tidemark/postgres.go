package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tidemark/tidemark/archive"
	pgbackup "github.com/tidemark/tidemark/basebackup/postgres"
	"github.com/tidemark/tidemark/internal/progress"
	pgrestore "github.com/tidemark/tidemark/restore/postgres"
	"github.com/tidemark/tidemark/wal"
)

func (a *app) streamPostgres(ctx context.Context, rf *repoFlags, cfg wal.Config) error {
	if cfg.NoSlot && cfg.CreateSlot {
		return usageErr(fmt.Errorf("--no-slot and --create-slot contradict each other"))
	}
	if cfg.NoSlot {
		cfg.Slot = ""
	}
	r, err := rf.open(ctx, false)
	if err != nil {
		return err
	}
	cfg.Repo, cfg.Log = r, a.log
	return r.WithLock(ctx, "stream-wal", archive.LockOptions{Purpose: "tidemark stream (PostgreSQL WAL)"}, func(ctx context.Context) error {
		return wal.Stream(ctx, cfg)
	})
}

// walFetch serves restore_command. PostgreSQL treats any non-zero exit as
// "not available" and asks for many files that never existed (.history
// files of future timelines), so a missing file exits 1 quietly; anything
// else is reported loudly.
func (a *app) walFetch(ctx context.Context, rf *repoFlags, name, dest string) error {
	err := a.fetchWAL(ctx, rf, name, dest)
	if err == nil || errors.Is(err, errQuietMissing) {
		return err
	}
	return fmt.Errorf("%w: %w", errFetchFailed, err)
}

func (a *app) fetchWAL(ctx context.Context, rf *repoFlags, name, dest string) error {
	r, err := rf.open(ctx, true)
	if err != nil {
		return err
	}
	g, err := wal.RepoGeometry(ctx, r)
	if err != nil {
		return fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	// Written to a temporary name and renamed only once complete and verified:
	// PostgreSQL must never see a partial file under its name.
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".tidemark-fetch-*")
	if err != nil {
		return fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	err = wal.Fetch(ctx, r, g, name, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, archive.ErrNotExist) {
		return errQuietMissing
	}
	if err != nil {
		return fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	return nil
}

// runBackupPostgres takes a backup under the maintenance lock; shared by
// the command and the agent.
func (a *app) runBackupPostgres(ctx context.Context, rf *repoFlags, cfg pgbackup.Config) (*pgbackup.Result, error) {
	r, err := rf.open(ctx, false)
	if err != nil {
		return nil, err
	}
	cfg.Repo, cfg.Log = r, a.log
	var res *pgbackup.Result
	err = r.WithLock(ctx, "maintenance", archive.LockOptions{Purpose: "tidemark backup (PostgreSQL)"}, func(ctx context.Context) error {
		res, err = pgbackup.Backup(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, err
	}
	m := res.Manifest
	a.log.Info("base backup committed", "backup", m.ID, "start_lsn", res.Meta.StartLSN, "stop_lsn", res.Meta.StopLSN,
		"logical_bytes", m.Stats.Logical, "new_stored_bytes", m.Stats.NewStored, "wal_archived_by", res.Meta.WALArchivedBy,
		"seconds", m.Finished.Sub(m.Started).Seconds())
	return res, nil
}

func (a *app) backupPostgres(ctx context.Context, rf *repoFlags, cfg pgbackup.Config, asJSON bool) error {
	bar := progress.New(a.stderr)
	cfg.Progress = func(done, total int64) { bar.Bytes("backup", done>>20, done, total) }
	start := time.Now()
	res, err := a.runBackupPostgres(ctx, rf, cfg)
	bar.Done()
	if err != nil {
		return err
	}
	st, m := res.Manifest.Stats, res.Manifest
	secs := time.Since(start).Seconds()
	if asJSON {
		return json.NewEncoder(a.stdout).Encode(map[string]any{"backup": m.ID, "type": m.Type, "start_lsn": res.Meta.StartLSN,
			"stop_lsn": res.Meta.StopLSN, "timeline": res.Meta.StopTimeline, "logical_bytes": st.Logical, "new_stored_bytes": st.NewStored,
			"new_chunks": st.NewChunks, "deduplicated_chunks": st.DedupChunks, "seconds": secs, "wal_archived_by": res.Meta.WALArchivedBy})
	}
	fmt.Fprintf(a.stdout, "backup %s (%s) committed: %s – %s on timeline %d\n", m.ID, m.Type, res.Meta.StartLSN, res.Meta.StopLSN, res.Meta.StopTimeline)
	fmt.Fprintf(a.stdout, "  %s logical, %s newly stored (%d new chunks, %d already in the repository), %.1fs, %.0f MiB/s\n",
		humanBytes(st.Logical), humanBytes(st.NewStored), st.NewChunks, st.DedupChunks, secs, float64(st.Logical)/(1<<20)/secs)
	fmt.Fprintf(a.stdout, "  WAL %s – %s archived by the %s\n", res.Meta.StartLSN, res.Meta.StopLSN, res.Meta.WALArchivedBy)
	return nil
}

type startOpts struct {
	start   bool
	port    int
	binDir  string
	timeout time.Duration
}

func (a *app) restorePostgres(ctx context.Context, rf *repoFlags, cfg pgrestore.Config, so startOpts) error {
	if so.start && os.Geteuid() == 0 {
		return usageErr(pgrestore.ErrRunningAsRoot) // refuse before restoring anything
	}
	r, err := rf.open(ctx, true)
	if err != nil {
		return err
	}
	if cfg.RestoreCommand, err = restoreCommand(rf); err != nil {
		return err
	}
	bar := progress.New(a.stderr)
	cfg.Repo, cfg.Log = r, a.log
	cfg.Progress = func(done, total int64) { bar.Bytes("restore", done>>20, done, total) }
	start := time.Now()
	plan, err := pgrestore.Restore(ctx, cfg)
	bar.Done()
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "restored backup %s into %s in %.1fs\n  recovery target: %s (archived WAL reaches %s on timeline %d)\n",
		plan.Backup.ID, cfg.TargetDir, time.Since(start).Seconds(), cfg.Target, plan.WALUntil, plan.Timeline)
	if cfg.Delta {
		fmt.Fprintf(a.stdout, "  delta: kept %s already on disk, fetched %s\n", humanBytes(plan.Kept), humanBytes(plan.Fetched))
	}
	if !so.start {
		fmt.Fprintf(a.stdout, "  start PostgreSQL on it to recover and promote; restore_command fetches WAL from the repository\n")
		return nil
	}
	binDir := so.binDir
	if binDir == "" {
		if binDir, err = pgrestore.BinDir(plan.Meta.ServerVersion); err != nil {
			return err
		}
	}
	fmt.Fprintf(a.stdout, "starting PostgreSQL on port %d: replaying WAL from the repository…\n", so.port)
	rec, err := pgrestore.StartRestored(ctx, cfg.TargetDir, binDir, so.port, so.timeout, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "recovered and promoted in %.1fs (%.1fs in all); the server runs on port %d\n  %s\n",
		rec.Took.Seconds(), time.Since(start).Seconds(), so.port, rec.StoppedAt)
	if rec.LastCommit != "" {
		fmt.Fprintf(a.stdout, "  %s\n", rec.LastCommit)
	}
	fmt.Fprintf(a.stdout, "  log: %s\n", rec.LogFile)
	return nil
}

// restoreCommand builds the restore_command for a restored cluster: the
// absolute path of this executable and the repository settings, with key
// files by absolute path — never a key or passphrase inline.
func restoreCommand(rf *repoFlags) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	repo := rf.repo
	if !strings.Contains(repo, "://") {
		if repo, err = filepath.Abs(repo); err != nil {
			return "", err
		}
	}
	parts := []string{shellQuote(self), "wal-fetch", "--repo", shellQuote(repo)}
	for flag, path := range map[string]string{"--identity-file": rf.identityFile, "--passphrase-file": rf.passphraseFile} {
		if path == "" {
			continue
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return "", err
		}
		parts = append(parts, flag, shellQuote(abs))
	}
	return strings.Join(append(parts, "%f", "%p"), " "), nil
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r == ':' || r == '=' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
