package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/tidemark/tidemark/archive"
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
	return wal.Stream(ctx, cfg)
}

// walFetch serves restore_command. PostgreSQL treats any non-zero exit as
// "not available" and asks for many files that never existed (.history
// files of future timelines), so a missing file exits 1 quietly; anything
// else is reported loudly.
func (a *app) walFetch(ctx context.Context, rf *repoFlags, name, dest string) error {
	r, err := rf.open(ctx, true)
	if err != nil {
		return err
	}
	src, err := r.Source(ctx)
	if err != nil {
		return fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	segSize, err := strconv.ParseUint(src.Details["wal_segment_size"], 10, 64)
	if err != nil || src.Engine != "postgres" {
		return fmt.Errorf("wal-fetch: the repository holds no PostgreSQL WAL (%s)", src.Engine)
	}
	// Written to a temporary name and renamed only once complete and verified:
	// PostgreSQL must never see a partial file under its name.
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".tidemark-fetch-*")
	if err != nil {
		return fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	err = wal.Fetch(ctx, r, wal.Geometry{SegSize: segSize}, name, tmp)
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
