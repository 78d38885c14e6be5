package mongodb

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tidemark/tidemark/archive"
	mongobackup "github.com/tidemark/tidemark/basebackup/mongodb"
	"github.com/tidemark/tidemark/oplog"
	"github.com/tidemark/tidemark/restore"
)

// DrillConfig configures a MongoDB drill into a scratch server the
// operator provides (Tidemark ships no MongoDB server to start).
type DrillConfig struct {
	Repo      *archive.Repository
	To        Target
	TargetURL string // an empty server; emptied again after the drill
	Jobs      int
	Log       *slog.Logger
}

// internalDBs are never restored into, counted or dropped.
var internalDBs = map[string]bool{"admin": true, "local": true, "config": true}

// Drill restores into the scratch server, reads every document of
// every restored collection back, checks every index the backup recorded
// exists, and empties the server again.
func Drill(ctx context.Context, cfg DrillConfig) (*restore.DrillReport, error) {
	rep := restore.NewDrillReport("mongodb", cfg.To.String())
	cfg.Log = restore.OrDiscard(cfg.Log)
	c, err := oplog.Connect(ctx, cfg.TargetURL)
	if err != nil {
		return rep, fmt.Errorf("drill: %w", err)
	}
	defer c.Disconnect(context.WithoutCancel(ctx))
	// A drill into a server holding data would mix it with the restore.
	dbs, err := userDatabases(ctx, c)
	if err != nil {
		return rep, fmt.Errorf("drill: list the scratch server's databases: %w", err)
	}
	if len(dbs) > 0 {
		return rep, fmt.Errorf("drill: %w: the scratch server holds databases %s; drills need an empty server (they empty it again afterwards)",
			restore.ErrTargetExists, strings.Join(dbs, ", "))
	}
	defer func() {
		if err := dropUserDatabases(context.WithoutCancel(ctx), c); err != nil {
			cfg.Log.Error("drill: could not empty the scratch server", "err", err)
		}
	}()
	start := time.Now()
	res, err := Restore(ctx, Config{Repo: cfg.Repo, TargetURL: cfg.TargetURL, To: cfg.To, Jobs: cfg.Jobs, Log: cfg.Log})
	if res != nil && res.Plan != nil {
		rep.Backup = res.Plan.Backup.ID
	}
	if err != nil {
		return rep, fmt.Errorf("drill: %w", err)
	}
	rep.RTOSeconds = time.Since(start).Seconds()
	rep.RestoreSeconds = rep.RTOSeconds
	m, err := cfg.Repo.ReadManifest(ctx, rep.Backup)
	if err != nil {
		return rep, fmt.Errorf("drill: %w", err)
	}
	if err := checkMongo(ctx, c, m, rep, cfg.Log); err != nil {
		return rep, fmt.Errorf("drill: checks: %w", err)
	}
	rep.OK = rep.Problems == 0
	return rep, nil
}

// checkMongo reads every restored collection through and looks for the
// indexes the base recorded.
func checkMongo(ctx context.Context, c *mongo.Client, m *archive.Manifest, rep *restore.DrillReport, log *slog.Logger) error {
	dbs := map[string]bool{}
	for _, f := range m.Files {
		db, name, _ := strings.Cut(f.Path, ".")
		var meta mongobackup.CollectionMeta
		if err := json.Unmarshal(f.Extra, &meta); err != nil {
			return fmt.Errorf("backup %s: %s: %w", m.ID, f.Path, archive.ErrCorrupt)
		}
		if meta.Type == "view" {
			continue
		}
		dbs[db] = true
		rep.Tables++
		coll := c.Database(db).Collection(name)
		cur, err := coll.Find(ctx, bson.D{})
		if err != nil {
			return fmt.Errorf("read %s: %w", f.Path, err)
		}
		var n int64
		for cur.Next(ctx) {
			n++
		}
		err = cur.Err()
		cur.Close(ctx)
		if err != nil {
			return fmt.Errorf("read %s: %w", f.Path, err)
		}
		rep.Rows += n
		have := map[string]bool{}
		specs, err := coll.Indexes().ListSpecifications(ctx)
		if err != nil {
			return fmt.Errorf("list indexes of %s: %w", f.Path, err)
		}
		for _, s := range specs {
			have[s.Name] = true
		}
		for _, j := range meta.Indexes {
			var spec struct {
				Name string `json:"name"`
			}
			if err := json.Unmarshal(j, &spec); err != nil || spec.Name == "" {
				return fmt.Errorf("backup %s: index of %s: %w", m.ID, f.Path, archive.ErrCorrupt)
			}
			rep.IndexesChecked++
			if !have[spec.Name] {
				rep.Problems++
				log.Error("drill: index missing after restore", "collection", f.Path, "index", spec.Name)
			}
		}
		log.Info("drill: collection", "collection", f.Path, "documents", n)
	}
	rep.Databases = len(dbs)
	return nil
}

func userDatabases(ctx context.Context, c *mongo.Client) ([]string, error) {
	names, err := c.ListDatabaseNames(ctx, bson.D{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if !internalDBs[n] {
			out = append(out, n)
		}
	}
	return out, nil
}

func dropUserDatabases(ctx context.Context, c *mongo.Client) error {
	dbs, err := userDatabases(ctx, c)
	if err != nil {
		return err
	}
	for _, db := range dbs {
		if err := c.Database(db).Drop(ctx); err != nil {
			return fmt.Errorf("drop %s: %w", db, err)
		}
	}
	return nil
}
