package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tidemark/tidemark/archive"
	mongobackup "github.com/tidemark/tidemark/basebackup/mongodb"
	"github.com/tidemark/tidemark/internal/progress"
	"github.com/tidemark/tidemark/oplog"
	"github.com/tidemark/tidemark/restore"
	mongorestore "github.com/tidemark/tidemark/restore/mongodb"
)

// Lock names of the MongoDB commands: one streamer per repository; backups
// and restores share the maintenance lock with expire and verify.
const mongoStreamLock = "stream-mongodb"

// streamMongo archives the oplog under its stream lock; caughtUp, when set,
// hears when the archive last held everything (for the agent's RPO).
func (a *app) streamMongo(ctx context.Context, rf *repoFlags, source string, flushInterval time.Duration, caughtUp func(time.Time)) error {
	r, err := rf.open(ctx, false)
	if err != nil {
		return err
	}
	cfg := oplog.Config{Repo: r, Source: source, FlushInterval: flushInterval, Log: a.log}
	if caughtUp != nil {
		cfg.Progress = func(durable oplog.TS) { caughtUp(time.Unix(int64(durable.T), 0)) }
		cfg.CaughtUp = caughtUp
	}
	err = r.WithLock(ctx, mongoStreamLock, archive.LockOptions{Purpose: "tidemark stream (MongoDB oplog)"}, func(ctx context.Context) error {
		return oplog.Stream(ctx, cfg)
	})
	return mongoGap(err)
}

// mongoGap gives a lost oplog range the gap exit code.
func mongoGap(err error) error {
	if errors.Is(err, oplog.ErrRollover) {
		return fmt.Errorf("%w: %w", restore.ErrGap, err)
	}
	return err
}

func (a *app) backupMongo(ctx context.Context, rf *repoFlags, source, typ string, jobs int, asJSON bool) error {
	if typ != "full" {
		// Every MongoDB base is a full scan (stored deduplicated): saying
		// otherwise in the manifest would mislead retention.
		return usageErr(fmt.Errorf("--type %s: MongoDB base backups are full scans (each stores only chunks the repository lacks)", typ))
	}
	bar := progress.New(a.stderr)
	started := time.Now()
	res, err := a.runBackupMongo(ctx, rf, mongobackup.Config{Source: source, Jobs: jobs,
		Progress: func(docs, bytes int64) { bar.Bytes("backup", docs, bytes, 0) }})
	bar.Done()
	if err != nil {
		return err
	}
	m, meta, st := res.Manifest, res.Meta, res.Manifest.Stats
	secs := time.Since(started).Seconds()
	a.log.Info("base backup committed", "backup", m.ID, "start_ts", meta.StartTS, "stop_ts", meta.StopTS,
		"documents", meta.Documents, "logical_bytes", st.Logical, "new_stored_bytes", st.NewStored, "seconds", secs)
	if asJSON {
		return json.NewEncoder(a.stdout).Encode(map[string]any{"backup": m.ID, "type": m.Type, "flavour": meta.Flavour,
			"start_ts": meta.StartTS, "stop_ts": meta.StopTS, "collections": meta.Collections, "documents": meta.Documents,
			"logical_bytes": st.Logical, "new_stored_bytes": st.NewStored, "new_chunks": st.NewChunks,
			"deduplicated_chunks": st.DedupChunks, "seconds": secs, "oplog_archived_by": meta.OplogArchivedBy})
	}
	fmt.Fprintf(a.stdout, "backup %s committed (%s %s): oplog %s – %s\n", m.ID, meta.Flavour, meta.Version, meta.StartTS, meta.StopTS)
	fmt.Fprintf(a.stdout, "  %d collections, %d documents, %s logical, %s newly stored, %.1fs, %.0f documents/s\n",
		meta.Collections, meta.Documents, humanBytes(st.Logical), humanBytes(st.NewStored), secs, float64(meta.Documents)/secs)
	fmt.Fprintf(a.stdout, "  oplog %s – %s archived by the %s\n", meta.StartTS, meta.StopTS, meta.OplogArchivedBy)
	return nil
}

// runBackupMongo takes a backup under the maintenance lock; shared by the
// command and the agent.
func (a *app) runBackupMongo(ctx context.Context, rf *repoFlags, cfg mongobackup.Config) (*mongobackup.Result, error) {
	r, err := rf.open(ctx, false)
	if err != nil {
		return nil, err
	}
	cfg.Repo, cfg.Log = r, a.log
	var res *mongobackup.Result
	err = r.WithLock(ctx, "maintenance", archive.LockOptions{Purpose: "tidemark backup (MongoDB)"}, func(ctx context.Context) error {
		res, err = mongobackup.Backup(ctx, cfg)
		return err
	})
	return res, mongoGap(err)
}

type mongoRestoreArgs struct {
	target, toTime, toTS string
	latest               bool
	namespaces           []string
	force                bool
	jobs                 int
}

func (a *app) restoreMongo(ctx context.Context, rf *repoFlags, args mongoRestoreArgs) error {
	to := mongorestore.Target{Latest: args.latest}
	var err error
	if args.toTS != "" {
		if to.TS, err = oplog.ParseTS(args.toTS); err != nil {
			return usageErr(fmt.Errorf("--to-ts: %w", err))
		}
		if to.TS.IsZero() {
			return usageErr(fmt.Errorf("--to-ts 0:0 names no oplog entry"))
		}
	}
	if args.toTime != "" {
		if to.Time, err = restore.ParseTime(args.toTime); err != nil {
			return usageErr(err)
		}
	}
	if args.jobs < 1 {
		return usageErr(fmt.Errorf("--jobs must be at least 1"))
	}
	r, err := rf.open(ctx, true)
	if err != nil {
		return err
	}
	bar := progress.New(a.stderr)
	cfg := mongorestore.Config{Repo: r, TargetURL: args.target, To: to, Namespaces: args.namespaces, Force: args.force,
		Jobs: args.jobs, Log: a.log, Progress: func(phase string, n int64) { bar.Bytes(phase, n, 0, 0) }}
	started := time.Now()
	res, err := mongorestore.Restore(ctx, cfg)
	bar.Done()
	if err != nil {
		return err
	}
	p := res.Plan
	fmt.Fprintf(a.stdout, "restored backup %s (%d collections, %d documents) and replayed %d oplog operations %s – %s in %.1fs\n",
		p.Backup.ID, res.Collections, res.Documents, res.Ops, p.From, p.To, time.Since(started).Seconds())
	if !res.Last.IsZero() {
		fmt.Fprintf(a.stdout, "  target %s: last replayed entry %s written %s\n", to, res.Last, res.LastTime.UTC().Format(time.RFC3339Nano))
	} else {
		fmt.Fprintf(a.stdout, "  target %s: the base itself (no oplog entries after its start)\n", to)
	}
	return nil
}

// oplogStatus is what status shows of a MongoDB repository's oplog.
type oplogStatus struct {
	Stream  string              `json:"stream"`
	Flavour string              `json:"flavour"`
	Spans   []oplogSpan         `json:"spans"`
	Breaks  []string            `json:"breaks"`
	Gaps    []archive.GapRecord `json:"gaps"`
}

type oplogSpan struct {
	Start     string    `json:"start_ts"`
	End       string    `json:"end_ts"`
	FirstTime time.Time `json:"first_time"`
	LastTime  time.Time `json:"last_time"`
}

// mongoStatus describes the archived oplog: its continuous spans (a
// restore can reach any point inside one from a base within it), the
// breaks between them and recorded gaps. nil for other engines.
func mongoStatus(ctx context.Context, r *archive.Repository) (*oplogStatus, error) {
	src, err := r.Source(ctx)
	if errors.Is(err, archive.ErrNotExist) {
		return nil, nil
	}
	if err != nil || src.Engine != oplog.Engine {
		return nil, err
	}
	st := &oplogStatus{Stream: oplog.StreamName(src.Details["set_name"]), Flavour: src.Details["flavour"], Spans: []oplogSpan{}, Breaks: []string{}}
	chain, err := r.ReadStream(ctx, st.Stream)
	if err != nil {
		return nil, err
	}
	spans, err := oplog.Spans(chain)
	if err != nil {
		return nil, err
	}
	for _, s := range spans {
		st.Spans = append(st.Spans, oplogSpan{Start: s.Start.String(), End: s.End.String(), FirstTime: s.FirstTime.UTC(), LastTime: s.LastTime.UTC()})
	}
	for _, b := range chain.Breaks {
		st.Breaks = append(st.Breaks, b.String())
	}
	gaps, err := r.Gaps(ctx)
	if err != nil {
		return nil, err
	}
	for _, g := range gaps {
		if g.Engine == oplog.Engine {
			st.Gaps = append(st.Gaps, g)
		}
	}
	return st, nil
}

func (s *oplogStatus) print(w io.Writer) {
	for _, sp := range s.Spans {
		fmt.Fprintf(w, "oplog       %s (%s): %s (%s) – %s (%s)\n", s.Stream, s.Flavour, sp.Start,
			sp.FirstTime.Format(time.RFC3339), sp.End, sp.LastTime.Format(time.RFC3339))
	}
	for _, b := range s.Breaks {
		fmt.Fprintf(w, "GAP         %s\n", b)
	}
}

// verifyMongo lists what stops a MongoDB repository's bases from
// restoring: breaks in the oplog, bases whose window is not archived,
// undecodable segments.
func verifyMongo(ctx context.Context, r *archive.Repository) ([]string, error) {
	return mongorestore.VerifyOplog(ctx, r)
}
