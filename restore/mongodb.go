package restore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tidemark/tidemark/archive"
	mongobackup "github.com/tidemark/tidemark/basebackup/mongodb"
	"github.com/tidemark/tidemark/oplog"
)

// MongoTarget is where a MongoDB restore stops: exactly one of Latest, TS
// (through that oplog entry) or Time (through entries written at or
// before it).
type MongoTarget struct {
	Latest bool
	TS     oplog.TS
	Time   time.Time
}

func (t MongoTarget) String() string {
	switch {
	case t.Latest:
		return "latest"
	case !t.TS.IsZero():
		return "ts " + t.TS.String()
	default:
		return "time " + t.Time.UTC().Format(time.RFC3339Nano)
	}
}

// MongoConfig configures a MongoDB restore.
type MongoConfig struct {
	Repo       *archive.Repository
	TargetURL  string // mongodb:// URL of the server to restore into
	To         MongoTarget
	Namespaces []string // "db.coll" or "db.*"; empty: everything
	Force      bool     // drop target collections that exist
	Jobs       int
	Log        *slog.Logger
	// Progress, when set, reports documents loaded and ops replayed.
	Progress func(phase string, done int64)
	Connect  func(ctx context.Context, url string) (*mongo.Client, error)
}

// MongoPlan is what a restore will do, decided before anything is written.
type MongoPlan struct {
	Backup   archive.BackupSummary
	Meta     mongobackup.Meta
	Flavour  string
	From, To oplog.TS // replay entries after From through To
	Segments []archive.SegmentInfo
	Window   []oplog.Span
}

// MongoResult reports a finished restore.
type MongoResult struct {
	Plan        *MongoPlan
	Collections int
	Documents   int64
	Ops         int64
	Last        oplog.TS // newest entry replayed (zero: none)
	LastTime    time.Time
}

// PlanMongo picks the newest base that can reach the target and checks
// the archived oplog is continuous from its start to the target.
func PlanMongo(ctx context.Context, repo *archive.Repository, to MongoTarget) (*MongoPlan, error) {
	src, err := repo.Source(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the repository's source: %w", err)
	}
	flavour, err := oplog.FlavourOf(src)
	if err != nil {
		return nil, err
	}
	chain, err := repo.ReadStream(ctx, oplog.StreamName(src.Details["set_name"]))
	if err != nil {
		return nil, err
	}
	spans, err := oplog.Spans(chain)
	if err != nil {
		return nil, err
	}
	p := &MongoPlan{Flavour: flavour, Window: spans}
	window := func() string {
		if len(spans) == 0 {
			return "no oplog is archived"
		}
		var s []string
		for _, sp := range spans {
			s = append(s, sp.String())
		}
		return "archived oplog: " + strings.Join(s, ", ")
	}
	switch {
	case to.Latest:
		if len(spans) == 0 {
			return nil, fmt.Errorf("%w: %s", ErrUnreachable, window())
		}
		p.To = spans[len(spans)-1].End
	case !to.TS.IsZero():
		p.To = to.TS
	default:
		ts, ok := oplog.TimeTS(chain, to.Time)
		if !ok {
			return nil, fmt.Errorf("%w: nothing archived was written at or after %s; %s", ErrUnreachable, to.Time.UTC().Format(time.RFC3339Nano), window())
		}
		p.To = ts
	}
	backups, err := repo.Backups(ctx)
	if err != nil {
		return nil, err
	}
	found := false
	for _, b := range backups {
		if b.Engine != oplog.Engine {
			continue
		}
		stop, err := oplog.ParseTS(b.Stop)
		if err != nil {
			return nil, fmt.Errorf("backup %s: stop %q: %w", b.ID, b.Stop, archive.ErrCorrupt)
		}
		if p.To.Less(stop) || (!to.Time.IsZero() && to.Time.Before(b.Finished)) {
			continue
		}
		p.Backup, found = b, true
	}
	if !found {
		return nil, fmt.Errorf("%w: no MongoDB base backup ends at or before %s (%d backups)", ErrUnreachable, to, len(backups))
	}
	if p.From, err = oplog.ParseTS(p.Backup.Start); err != nil {
		return nil, fmt.Errorf("backup %s: start %q: %w", p.Backup.ID, p.Backup.Start, archive.ErrCorrupt)
	}
	p.Segments, err = oplog.Range(chain, p.From, p.To)
	if errors.Is(err, oplog.ErrMissing) {
		return nil, fmt.Errorf("%w: from backup %s (oplog %s) to %s: %w", ErrGap, p.Backup.ID, p.From, to, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: from backup %s (oplog %s) to %s: %w; %s", ErrUnreachable, p.Backup.ID, p.From, to, err, window())
	}
	return p, nil
}

// RestoreMongo plans, refuses what it cannot do before writing, then loads
// the base and replays the oplog to the target.
func RestoreMongo(ctx context.Context, cfg MongoConfig) (*MongoResult, error) {
	if cfg.Jobs < 1 {
		cfg.Jobs = 4
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Connect == nil {
		cfg.Connect = oplog.Connect
	}
	if cfg.Progress == nil {
		cfg.Progress = func(string, int64) {}
	}
	include, err := nsFilter(cfg.Namespaces)
	if err != nil {
		return nil, err
	}
	plan, err := PlanMongo(ctx, cfg.Repo, cfg.To)
	if err != nil {
		return nil, err
	}
	m, err := cfg.Repo.ReadManifest(ctx, plan.Backup.ID)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(m.EngineMeta, &plan.Meta); err != nil {
		return nil, fmt.Errorf("backup %s: engine metadata: %w: %v", m.ID, archive.ErrCorrupt, err)
	}
	c, err := cfg.Connect(ctx, cfg.TargetURL)
	if err != nil {
		return nil, err
	}
	defer c.Disconnect(context.WithoutCancel(ctx))
	l := &mongoLoader{cfg: cfg, c: c, include: include}
	colls, err := l.prepare(ctx, m)
	if err != nil {
		return nil, err
	}
	res := &MongoResult{Plan: plan, Collections: len(colls)}
	t0 := time.Now()
	if res.Documents, err = l.load(ctx, colls); err != nil {
		return nil, err
	}
	if err := l.indexes(ctx, colls); err != nil {
		return nil, err
	}
	t1 := time.Now()
	if err := replayMongo(ctx, cfg, plan, c, include, res); err != nil {
		return nil, err
	}
	cfg.Log.Debug("restored", "backup", plan.Backup.ID, "documents", res.Documents, "load", t1.Sub(t0),
		"ops", res.Ops, "replay", time.Since(t1))
	return res, nil
}

// nsFilter compiles --ns selections: "db.coll" or "db.*".
func nsFilter(sel []string) (func(string) bool, error) {
	if len(sel) == 0 {
		return nil, nil
	}
	exact, dbs := map[string]bool{}, map[string]bool{}
	for _, s := range sel {
		db, coll, ok := strings.Cut(s, ".")
		if !ok || db == "" || coll == "" {
			return nil, fmt.Errorf("--ns %q: want db.collection or db.*", s)
		}
		if coll == "*" {
			dbs[db] = true
		} else {
			exact[s] = true
		}
	}
	return func(ns string) bool {
		db, _, _ := strings.Cut(ns, ".")
		return exact[ns] || dbs[db]
	}, nil
}
