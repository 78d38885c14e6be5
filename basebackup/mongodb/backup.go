// Package mongodb takes MongoDB (and FerretDB) base backups — every
// collection scanned into the repository's deduplicated chunk storage
// between two oplog positions — and defines what a backup records
// (meta.go), which restore/mongodb reads.
package mongodb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/basebackup"
	"github.com/tidemark/tidemark/oplog"
)

// Config configures a MongoDB base backup.
type Config struct {
	Repo   *archive.Repository
	Source string // mongodb:// URL (password from the environment)
	Jobs   int    // collections scanned (and chunks stored) in parallel
	Log    *slog.Logger
	// Progress, when set, is called as documents arrive, with the
	// documents expected in all (the collections' estimated counts).
	Progress func(docs, bytes, total int64)
	// OplogTimeout bounds the wait for a running streamer to archive the
	// backup's oplog window.
	OplogTimeout time.Duration
	// Connect overrides how the client is made (tests).
	Connect func(ctx context.Context, url string) (*mongo.Client, error)
}

// Result summarises a committed backup.
type Result struct {
	Manifest *archive.Manifest
	Meta     Meta
}

// Backup takes a base backup: the oplog position before, every collection
// scanned in parallel into chunks of raw BSON documents, the position
// after, and, once the oplog between them is archived, the manifest.
func Backup(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Jobs < 1 {
		cfg.Jobs = 4
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.OplogTimeout == 0 {
		cfg.OplogTimeout = 5 * time.Minute
	}
	if cfg.Connect == nil {
		cfg.Connect = oplog.Connect
	}
	c, err := cfg.Connect(ctx, cfg.Source)
	if err != nil {
		return nil, err
	}
	defer c.Disconnect(context.WithoutCancel(ctx))
	src, err := oplog.Identify(ctx, c)
	if err != nil {
		return nil, err
	}
	if _, err := cfg.Repo.BindSource(ctx, src.Archive()); err != nil {
		return nil, err
	}
	started := time.Now().UTC()
	start, emptyOplog, err := startTS(ctx, c, src)
	if err != nil {
		return nil, err
	}
	w, err := cfg.Repo.NewChunkWriter(ctx, cfg.Jobs)
	if err != nil {
		return nil, err
	}
	defer w.Abort() // packs still open after a failure leave nothing behind
	colls, err := listCollections(ctx, c)
	if err != nil {
		return nil, err
	}
	s := &scanner{cfg: cfg, c: c, w: w}
	files, err := s.scanAll(ctx, colls)
	if err != nil {
		return nil, err
	}
	stop, err := newestTS(ctx, c)
	if err != nil {
		return nil, err
	}
	if stop.Less(start) {
		stop = start
	}
	meta := Meta{Flavour: src.Flavour, Version: src.Version, SetName: src.SetName, StartTS: start.String(),
		StopTS: stop.String(), StopTime: time.Now().UTC(), Collections: len(colls), Documents: s.docs.Load()}
	if err := w.Commit(ctx); err != nil {
		return nil, err
	}
	if meta.OplogArchivedBy, err = ensureOplog(ctx, cfg, src, start, stop, emptyOplog); err != nil {
		return nil, fmt.Errorf("backup taken but not restorable: the oplog %s – %s is not archived: %w", start, stop, err)
	}
	em, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	m := &archive.Manifest{ID: archive.NewManifestID(started), Engine: oplog.Engine, Type: "full", Started: started,
		Finished: time.Now().UTC(), Start: meta.StartTS, Stop: meta.StopTS, Stream: src.StreamName(), Files: files,
		Stats: w.Stats(), EngineMeta: em}
	if err := cfg.Repo.CommitManifest(ctx, m); err != nil {
		return nil, err
	}
	return &Result{Manifest: m, Meta: meta}, nil
}

// startTS is where replay must begin: the newest oplog entry, or earlier
// when a transaction is open (its entries before now are not in the scan's
// view until it commits, and replay must see them whole).
func startTS(ctx context.Context, c *mongo.Client, src oplog.Source) (ts oplog.TS, empty bool, err error) {
	ts, empty, err = newestEntry(ctx, c)
	if err != nil || src.Flavour == oplog.FlavourFerretDB {
		return ts, empty, err // FerretDB has no multi-document transactions in its oplog
	}
	cur, err := c.Database("config").Collection("transactions").Find(ctx,
		bson.D{{Key: "state", Value: bson.D{{Key: "$in", Value: bson.A{"prepared", "inProgress"}}}}},
		options.Find().SetProjection(bson.D{{Key: "startOpTime", Value: 1}}))
	if err != nil {
		return oplog.TS{}, false, fmt.Errorf("read open transactions: %w", err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var t struct {
			StartOpTime struct {
				TS bson.Timestamp `bson:"ts"`
			} `bson:"startOpTime"`
		}
		if err := cur.Decode(&t); err != nil {
			return oplog.TS{}, false, fmt.Errorf("read open transactions: %w", err)
		}
		if s := oplog.FromBSON(t.StartOpTime.TS); !s.IsZero() && s.Less(ts) {
			ts = oplog.TS{T: s.T, I: s.I - 1}
			if s.I == 0 {
				ts = oplog.TS{T: s.T - 1, I: ^uint32(0)}
			}
		}
	}
	return ts, false, cur.Err()
}

// newestTS is the newest oplog entry's timestamp; on an empty oplog (a
// fresh FerretDB) the current second, before any entry still to come.
func newestTS(ctx context.Context, c *mongo.Client) (oplog.TS, error) {
	ts, _, err := newestEntry(ctx, c)
	return ts, err
}

func newestEntry(ctx context.Context, c *mongo.Client) (ts oplog.TS, empty bool, err error) {
	ts, ok, err := oplog.Newest(ctx, c)
	if err != nil {
		return oplog.TS{}, false, err
	}
	if !ok {
		return oplog.TS{T: uint32(time.Now().Unix() - 1)}, true, nil
	}
	return ts, false, nil
}

// ensureOplog waits until the repository holds the oplog from start to
// stop: from a running streamer (it holds the stream lock), or by
// archiving that range itself. It says which.
func ensureOplog(ctx context.Context, cfg Config, src oplog.Source, start, stop oplog.TS, emptyOplog bool) (string, error) {
	stream := src.StreamName()
	reached := func() (bool, error) {
		chain, err := cfg.Repo.ReadStream(ctx, stream)
		if err != nil {
			return false, err
		}
		_, err = oplog.Range(chain, start, stop)
		if errors.Is(err, oplog.ErrBeyond) {
			return false, nil
		}
		return err == nil, err
	}
	if start == stop {
		// Nothing was written during the scan: the base restores to stop
		// by itself, and a streamer starting on an empty stream begins at
		// the newest base's start.
		return "none needed", nil
	}
	if ok, err := reached(); ok || (err != nil && !errors.Is(err, oplog.ErrMissing)) {
		return "streamer", err
	}
	lock, lctx, err := cfg.Repo.AcquireLock(ctx, "stream-mongodb", archive.LockOptions{Purpose: "tidemark backup (archiving its oplog window)"})
	if errors.Is(err, archive.ErrLocked) {
		cfg.Log.Info("waiting for the running streamer to archive the backup's oplog window", "stop_ts", stop)
		if ok, err := basebackup.AwaitStreamer(ctx, cfg.OplogTimeout, reached); ok || err != nil {
			return "streamer", err
		}
		return "", fmt.Errorf("the running streamer did not archive up to %s within %s", stop, cfg.OplogTimeout)
	}
	if err != nil {
		return "", err
	}
	defer lock.Unlock(context.WithoutCancel(ctx))
	cfg.Log.Info("no streamer is running: archiving the backup's oplog window itself", "start_ts", start, "stop_ts", stop)
	if err := oplog.Stream(lctx, oplog.Config{Repo: cfg.Repo, Source: cfg.Source, FlushInterval: 200 * time.Millisecond,
		StartAt: start, StartSeen: emptyOplog, Until: stop, Log: cfg.Log, Connect: cfg.Connect}); err != nil {
		return "", err
	}
	if ok, err := reached(); !ok || err != nil {
		if err == nil {
			err = ctx.Err()
		}
		return "", fmt.Errorf("archiving the oplog window stopped early: %w", err)
	}
	return "backup", nil
}
