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
	var (
		rf    repoFlags
		check bool
	)
	cmd := &cobra.Command{
		Use:   "wal-fetch --repo URL (WAL_FILE DEST_PATH | --check)",
		Short: "Fetch one WAL file for PostgreSQL's restore_command",
		Long: `For restore_command: restore_command = 'tidemark wal-fetch --repo URL
--identity-file F %f %p'. Exits 0 only once the complete file is in place,
1 when the file is not archived.

--check opens the repository with the key files and reads its WAL, as
restore_command will: restore runs it as the restored server's OS user
before it writes anything.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if check {
				if len(args) != 0 {
					return usageErr(fmt.Errorf("--check takes no arguments"))
				}
				return a.walFetchCheck(cmd.Context(), &rf)
			}
			if len(args) != 2 {
				return usageErr(fmt.Errorf("want WAL_FILE DEST_PATH (restore_command's %%f %%p)"))
			}
			return a.walFetch(cmd.Context(), &rf, args[0], args[1])
		},
	}
	rf.register(cmd, true)
	cmd.Flags().BoolVar(&check, "check", false, "check that the repository, its WAL and the key files can be read, fetch nothing")
	return cmd
}

// errCheckDone stops the listing at its first object.
var errCheckDone = errors.New("done")

// walFetchCheck is wal-fetch without a file: everything a fetch needs
// (the repository, the key, the WAL area) is readable by this user.
func (a *app) walFetchCheck(ctx context.Context, rf *repoFlags) error {
	r, err := rf.open(ctx, true, a.log)
	if err != nil {
		return err
	}
	if _, err := wal.RepoGeometry(ctx, r); err != nil {
		return fmt.Errorf("wal-fetch --check: %w", err)
	}
	err = r.Store().List(ctx, "wal/", "", func(o archive.ObjectInfo) error {
		rc, err := r.Store().Get(ctx, o.Name, 0, 1)
		if err != nil {
			return err
		}
		rc.Close()
		return errCheckDone
	})
	if err != nil && !errors.Is(err, errCheckDone) {
		return fmt.Errorf("wal-fetch --check: read the archived WAL: %w", err)
	}
	return nil
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
