package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/progress"
	pgrestore "github.com/tidemark/tidemark/restore/postgres"
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
			bar := progress.New(a.stderr)
			rep, elapsed, err := a.verifyRepo(ctx, r, func(n, b int64) { bar.Bytes("verified objects", n, b, 0) })
			bar.Done()
			if err != nil {
				return err
			}
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
			return verifyOutcome(r, rep)
		},
	}
	rf.register(cmd, true)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// verifyReport is the outcome stored in the repository: counts, no names.
type verifyReport struct {
	Job      string    `json:"job"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Objects  int64     `json:"objects"`
	Bytes    int64     `json:"bytes"`
	Backups  int       `json:"backups"`
	Problems int       `json:"problems"`
	OK       bool      `json:"ok"`
}

// verifyRepo reads everything back and checks restorability (WAL
// continuity per timeline, recorded gaps), then records the outcome in the
// repository; shared by the command and the agent.
func (a *app) verifyRepo(ctx context.Context, r *archive.Repository, progress func(n, b int64)) (*archive.VerifyReport, time.Duration, error) {
	start := time.Now()
	rep, err := r.Verify(ctx, progress)
	if err != nil {
		return nil, 0, err
	}
	walProblems, err := pgrestore.VerifyWAL(ctx, r)
	if err != nil {
		return nil, 0, err
	}
	rep.Problems = append(rep.Problems, walProblems...)
	// Each engine's stream continuity and its bases' coverage; every check
	// finds nothing in a repository of another engine.
	for _, check := range []func(context.Context, *archive.Repository) ([]string, error){verifyMySQLStream, verifyMySQL, verifyMongo} {
		problems, err := check(ctx, r)
		if err != nil {
			return nil, 0, err
		}
		rep.Problems = append(rep.Problems, problems...)
	}
	gaps, err := r.Gaps(ctx)
	if err != nil {
		return nil, 0, err
	}
	for _, g := range gaps {
		rep.Problems = append(rep.Problems, fmt.Sprintf("recorded gap: %s stream stopped at %s on %s: %s", g.Engine, g.From, g.Detected.Format(time.RFC3339), g.Reason))
	}
	elapsed := time.Since(start)
	a.log.Info("verify finished", "repository", r.Store().Location(), "objects", rep.Objects,
		"bytes", rep.Bytes, "backups", rep.Backups, "problems", len(rep.Problems), "seconds", elapsed.Seconds())
	// A read-only repository (a restore host's credentials) cannot take the
	// report; the verification itself still stands.
	if err := r.PutReport(ctx, "verify", start, verifyReport{Job: "verify", Started: start.UTC(), Seconds: elapsed.Seconds(), Objects: rep.Objects,
		Bytes: rep.Bytes, Backups: rep.Backups, Problems: len(rep.Problems), OK: rep.OK()}); err != nil {
		a.log.Warn("verify report not stored", "err", err)
	}
	return rep, elapsed, nil
}

func verifyOutcome(r *archive.Repository, rep *archive.VerifyReport) error {
	if !rep.OK() {
		return fmt.Errorf("%w: %d problems in %s", archive.ErrVerifyFailed, len(rep.Problems), r.Store().Location())
	}
	return nil
}
