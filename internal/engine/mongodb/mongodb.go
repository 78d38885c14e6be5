// Package mongodb is the MongoDB engine (FerretDB as a flavour): the
// oplog tailed from local.oplog.rs (package oplog), base backups by
// parallel collection scans (basebackup/mongodb), and restores that load
// a base into a server and replay the oplog idempotently
// (restore/mongodb).
package mongodb

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/tidemark/tidemark/basebackup"
	mgbackup "github.com/tidemark/tidemark/basebackup/mongodb"
	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/oplog"
	"github.com/tidemark/tidemark/restore"
	mgrestore "github.com/tidemark/tidemark/restore/mongodb"
)

// Engine is MongoDB.
type Engine struct{}

// New returns the MongoDB engine.
func New() *Engine { return &Engine{} }

// Info implements engine.Engine.
func (*Engine) Info() engine.Info {
	return engine.Info{Name: oplog.Engine, Title: "MongoDB", Stream: "oplog", Schemes: []string{"mongodb", "mongodb+srv"},
		StreamLock: "stream-mongodb", Credentials: "a password file (--password-file, password_file) or the URL in TIDEMARK_SOURCE", RestoreTarget: "target"}
}

// Flags implements engine.Engine.
func (*Engine) Flags(cmd engine.Command, d *engine.Declarer) {
	switch cmd {
	case engine.CmdStream, engine.CmdBackup:
		d.String("password-file", "", "file holding the source password (or put the URL with its password in TIDEMARK_SOURCE)")
	case engine.CmdRestore:
		d.String("target", "", "server URL to restore into")
		d.String("to-ts", "", "restore to this oplog timestamp T:I")
		d.StringArray("ns", "restore only this namespace, db.collection or db.* (repeatable)")
		d.Bool("force", false, "drop and replace target collections that exist (default: refuse)")
		d.String("password-file", "", "file holding the target password (or put the URL with its password in TIDEMARK_TARGET)")
	case engine.CmdDrill:
		d.String("target", "", "an empty scratch server (mongodb:// URL) to restore into; emptied again afterwards")
	}
}

// Help implements engine.Engine.
func (*Engine) Help(cmd engine.Command) string {
	switch cmd {
	case engine.CmdStream:
		return `MongoDB (mongodb://): the oplog (local.oplog.rs), majority-committed entries
only; a rolled-over oplog is recorded as a gap (exit 6). FerretDB (with a
capped local.oplog.rs) is supported as a flavour.`
	case engine.CmdBackup:
		return `MongoDB: the oplog position before, every collection scanned in parallel
(raw BSON documents, options, indexes, views), the position after; the
manifest is committed once the oplog between them is archived (by the
running streamer, or by the backup itself). Every base is a full scan.`
	case engine.CmdRestore:
		return `MongoDB (--target mongodb://…): collections are created with their
options, documents inserted in parallel, indexes built, then the oplog is
replayed idempotently through ordinary writes up to --to-time, --to-ts T:I
or --latest. --ns db.coll or db.* selects namespaces; collections that
exist in the target are refused unless --force.`
	case engine.CmdDrill:
		return `MongoDB: into the empty scratch server --target names, every document read
back and every index the backup recorded looked for; the scratch server is
emptied again afterwards (Tidemark starts no MongoDB server itself).`
	}
	return ""
}

// Check implements engine.Engine.
func (*Engine) Check(cmd engine.Command, o engine.Options) error {
	switch cmd {
	case engine.CmdRestore:
		if o.String("target") == "" {
			return fmt.Errorf("a MongoDB restore needs --target mongodb://…: the server to restore into")
		}
		if s := o.String("to-ts"); s != "" {
			ts, err := oplog.ParseTS(s)
			if err != nil {
				return fmt.Errorf("--to-ts: %w", err)
			}
			if ts.IsZero() {
				return fmt.Errorf("--to-ts 0:0 names no oplog entry")
			}
		}
	case engine.CmdDrill:
		if o.String("target") == "" {
			return fmt.Errorf("MongoDB drills need --target: an empty scratch server to restore into (Tidemark starts none for MongoDB)")
		}
	}
	return nil
}

// withPassword puts the password from --password-file into a URL, in
// memory only.
func withPassword(raw string, o engine.Options) (string, error) {
	path := o.String("password-file")
	if path == "" {
		return raw, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	u.User = url.UserPassword(u.User.Username(), strings.TrimRight(string(b), "\r\n"))
	return u.String(), nil
}

// Stream implements engine.Engine.
func (*Engine) Stream(ctx context.Context, job engine.StreamJob) error {
	src, err := withPassword(job.Source, job.Options)
	if err != nil {
		return err
	}
	cfg := oplog.Config{Repo: job.Repo, Source: src, FlushInterval: job.FlushInterval, Log: job.Log, Observe: job.Observe}
	if job.Durable != nil {
		caughtUp := func(at time.Time) { job.Durable(engine.StreamProgress{CaughtUpAt: at}) }
		cfg.Progress = func(durable oplog.TS) { caughtUp(time.Unix(int64(durable.T), 0)) }
		cfg.CaughtUp = caughtUp
	}
	return oplog.Stream(ctx, cfg)
}

// Backup implements engine.Engine.
func (*Engine) Backup(ctx context.Context, job engine.BackupJob) (*engine.BackupReport, error) {
	if job.Type != "full" {
		// Every MongoDB base is a full scan (stored deduplicated): saying
		// otherwise in the manifest would mislead retention.
		return nil, fmt.Errorf("--type %s: MongoDB base backups are full scans (each stores only chunks the repository lacks): %w",
			job.Type, engine.ErrUsage)
	}
	src, err := withPassword(job.Source, job.Options)
	if err != nil {
		return nil, err
	}
	res, err := mgbackup.Backup(ctx, mgbackup.Config{Repo: job.Repo, Source: src, Jobs: job.Jobs, Log: job.Log,
		Progress: func(docs, bytes, total int64) {
			job.Report(engine.Step{Phase: "backup", Unit: "documents", Done: docs, Total: total, Bytes: bytes})
		}})
	if err != nil {
		return nil, err
	}
	m, meta := res.Manifest, res.Meta
	return &engine.BackupReport{Manifest: m, Start: meta.StartTS, Stop: meta.StopTS,
		Lines: []string{
			fmt.Sprintf("%s %s: oplog %s – %s, %s", meta.Flavour, meta.Version, meta.StartTS, meta.StopTS, basebackup.ArchivedBy(meta.OplogArchivedBy)),
			fmt.Sprintf("%d collections, %d documents", meta.Collections, meta.Documents),
		},
		Detail: map[string]any{"flavour": meta.Flavour, "start_ts": meta.StartTS, "stop_ts": meta.StopTS, "collections": meta.Collections,
			"documents": meta.Documents, "oplog_archived_by": meta.OplogArchivedBy}}, nil
}

// Drill implements engine.Engine.
func (*Engine) Drill(ctx context.Context, job engine.DrillJob) (*restore.DrillReport, error) {
	to := mgrestore.Target{Latest: true}
	if !job.To.Time.IsZero() {
		to = mgrestore.Target{Time: job.To.Time}
	}
	return mgrestore.Drill(ctx, mgrestore.DrillConfig{Repo: job.Repo, To: to, TargetURL: job.Options.String("target"),
		Jobs: job.Jobs, Log: job.Log})
}
