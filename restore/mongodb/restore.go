// Package mongodb restores MongoDB (and FerretDB) base backups into a
// running server: it plans (the newest base that reaches the target, the
// archived oplog continuous from it), loads the base's collections and
// indexes, and replays the archived oplog to the target through ordinary
// driver writes. It also runs drills and verifies the archived oplog.
package mongodb

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/oplog"
	"github.com/tidemark/tidemark/restore"
)

// Config configures a MongoDB restore.
type Config struct {
	Repo       *archive.Repository
	TargetURL  string // mongodb:// URL of the server to restore into
	To         Target
	Namespaces []string // "db.coll" or "db.*"; empty: everything
	Force      bool     // drop target collections that exist
	Jobs       int
	Log        *slog.Logger
	// Progress, when set, reports documents loaded and entries replayed
	// of their totals (the replay's total is estimated from its segments).
	Progress func(phase string, done, total int64)
	Connect  func(ctx context.Context, url string) (*mongo.Client, error)
}

// Result reports a finished restore.
type Result struct {
	Plan        *Plan
	Collections int
	Documents   int64
	Ops         int64
	Last        oplog.TS // newest entry replayed (zero: none)
	LastTime    time.Time
	LoadTime    time.Duration // documents and indexes
	ReplayTime  time.Duration
}

// Restore plans, refuses what it cannot do before writing, then loads
// the base and replays the oplog to the target.
func Restore(ctx context.Context, cfg Config) (*Result, error) {
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
		cfg.Progress = func(string, int64, int64) {}
	}
	include, err := nsFilter(cfg.Namespaces)
	if err != nil {
		return nil, err
	}
	plan, err := PlanRestore(ctx, cfg.Repo, cfg.To)
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
	l := &loader{cfg: cfg, c: c, include: include}
	colls, err := l.prepare(ctx, m)
	if err != nil {
		return nil, err
	}
	res := &Result{Plan: plan, Collections: len(colls)}
	names := collNames(colls)
	again := fmt.Sprintf("to start again, run the same restore with --force (it drops and replaces %s)", names)
	t0 := time.Now()
	if res.Documents, err = l.load(ctx, colls); err != nil {
		return nil, restore.Unfinished(err, fmt.Sprintf("the target holds %s partly loaded from backup %s", names, plan.Backup.ID), again)
	}
	if err := l.indexes(ctx, colls); err != nil {
		return nil, restore.Unfinished(err, fmt.Sprintf("the target holds %s loaded from backup %s, some indexes missing", names, plan.Backup.ID), again)
	}
	t1 := time.Now()
	if err := replay(ctx, cfg, plan, c, include, res); err != nil {
		at := "none of the oplog replayed"
		if !res.Last.IsZero() {
			at = fmt.Sprintf("the oplog replayed up to about %s (%d entries)", res.Last, res.Ops)
		}
		return nil, restore.Unfinished(err, fmt.Sprintf("the target holds %s from backup %s with %s", names, plan.Backup.ID, at), again)
	}
	res.LoadTime, res.ReplayTime = t1.Sub(t0), time.Since(t1)
	cfg.Log.Debug("restored", "backup", plan.Backup.ID, "documents", res.Documents, "load", res.LoadTime,
		"ops", res.Ops, "replay", res.ReplayTime)
	return res, nil
}

// collNames names the restored collections for messages: a few, then a count.
func collNames(colls []collection) string {
	var names []string
	for i, c := range colls {
		if i == 5 {
			return fmt.Sprintf("collections %s and %d more", strings.Join(names, ", "), len(colls)-5)
		}
		names = append(names, c.ns())
	}
	if len(names) == 0 {
		return "no collections"
	}
	return "collections " + strings.Join(names, ", ")
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
