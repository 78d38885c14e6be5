package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/progress"
	"github.com/tidemark/tidemark/restore"
)

func (a *app) verifyCmd() *cobra.Command {
	var (
		rf     repoFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "verify --repo URL [--identity-file F | --passphrase-file F] [--json]",
		Short: "Read every object back and check checksums, keys and references",
		Long: `Read every object of the repository back through the object format —
checksums, authenticated encryption, chunk ids — and check that every chunk
a base backup references is present; for PostgreSQL, that every base
backup's WAL is archived and the WAL after the oldest backup has no holes
(and any gap a streamer recorded). Exits 3 when anything is wrong, naming
each bad object or missing range.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := rf.open(ctx, true)
			if err != nil {
				return err
			}
			start := time.Now()
			bar := progress.New(a.stderr)
			rep, err := r.Verify(ctx, func(n, b int64) { bar.Bytes("verified objects", n, b, 0) })
			bar.Done()
			if err != nil {
				return err
			}
			// Restorability: WAL continuity per timeline, and recorded gaps.
			walProblems, err := restore.VerifyPostgresWAL(ctx, r)
			if err != nil {
				return err
			}
			rep.Problems = append(rep.Problems, walProblems...)
			gaps, err := r.Gaps(ctx)
			if err != nil {
				return err
			}
			for _, g := range gaps {
				rep.Problems = append(rep.Problems, fmt.Sprintf("recorded gap: %s stream stopped at %s on %s: %s", g.Engine, g.From, g.Detected.Format(time.RFC3339), g.Reason))
			}
			elapsed := time.Since(start)
			a.log.Info("verify finished", "repository", r.Store().Location(), "objects", rep.Objects,
				"bytes", rep.Bytes, "backups", rep.Backups, "problems", len(rep.Problems), "seconds", elapsed.Seconds())
			if asJSON {
				if err := json.NewEncoder(a.stdout).Encode(rep); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(a.stdout, "verified %d objects (%s) and %d backups in %s\n", rep.Objects, humanBytes(rep.Bytes), rep.Backups, elapsed.Round(time.Millisecond))
				for _, p := range rep.Problems {
					fmt.Fprintf(a.stdout, "PROBLEM: %s\n", p)
				}
			}
			if !rep.OK() {
				return fmt.Errorf("%w: %d problems in %s", archive.ErrVerifyFailed, len(rep.Problems), r.Store().Location())
			}
			return nil
		},
	}
	rf.register(cmd, true)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}
