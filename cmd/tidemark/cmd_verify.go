package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/internal/jobs"
	"github.com/tidemark/tidemark/internal/progress"
)

func (a *app) verifyCmd() *cobra.Command {
	var (
		rf     repoFlags
		asJSON bool
		repair bool
	)
	cmd := &cobra.Command{
		Use:   "verify --repo URL [--identity-file F | --passphrase-file F] [--repair] [--json]",
		Short: "Read every object back and check checksums, keys and references",
		Long: `Read every object of the repository back through the object format —
checksums, authenticated encryption, chunk ids — and check that every chunk
a base backup references is present and indexed, and that its refs and
catalog entry exist and agree with its manifest; then, for each engine,
that every base backup's stream (WAL, binlog, oplog) is archived and
continuous to the newest archived change, and any gap a streamer recorded.
Exits 3 when anything is wrong, naming each bad object or missing range.
What interrupted work left behind (a killed backup's packs, a killed
write's temporary file) is listed as leftovers, which expire removes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := rf.open(ctx, true, a.log)
			if err != nil {
				return err
			}
			if repair {
				done, err := jobs.Repair(ctx, r, a.log)
				if !asJSON {
					for _, d := range done {
						fmt.Fprintf(a.stdout, "repaired: %s\n", d)
					}
				}
				if err != nil {
					return err
				}
			}
			bar := a.newProgress()
			rep, elapsed, err := jobs.Verify(ctx, a.engines, r, a.log, func(n, b int64) { bar.Update(progress.Update{Phase: "verify", Unit: "objects", Done: n, Bytes: b}) })
			bar.Done()
			if err != nil {
				return err
			}
			if asJSON {
				if err := json.NewEncoder(a.stdout).Encode(rep); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(a.stdout, "verified %d objects (%s) and %d backups in %s\n", rep.Objects, progress.FormatBytes(rep.Bytes), rep.Backups, elapsed.Round(time.Millisecond))
				for _, p := range rep.Problems {
					fmt.Fprintf(a.stdout, "PROBLEM: %s\n", p)
				}
				for _, l := range rep.Leftovers {
					fmt.Fprintf(a.stdout, "leftover: %s\n", l)
				}
			}
			return jobs.VerifyOutcome(r, rep)
		},
	}
	rf.register(cmd, true)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().BoolVar(&repair, "repair", false, "first write again what intact objects can give back: a backup's lost refs object or catalog entry\n"+
		"(from its manifest), a lost chunk index (from the packs' trailers); never deletes or overwrites anything")
	return cmd
}
