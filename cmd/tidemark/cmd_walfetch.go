package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/wal"
)

func (a *app) walFetchCmd() *cobra.Command {
	var rf repoFlags
	cmd := &cobra.Command{
		Use:   "wal-fetch --repo URL WAL_FILE DEST_PATH",
		Short: "Fetch one WAL file for PostgreSQL's restore_command",
		Long: `For restore_command: restore_command = 'tidemark wal-fetch --repo URL
--identity-file F %f %p'. Exits 0 only once the complete file is in place,
1 when the file is not archived.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.walFetch(cmd.Context(), &rf, args[0], args[1])
		},
	}
	rf.register(cmd, true)
	return cmd
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
	r, err := rf.open(ctx, true, a.log)
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
