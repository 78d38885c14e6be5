package mongodb

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"golang.org/x/sync/errgroup"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/oplog"
)

// collection is one namespace as listCollections describes it.
type collection struct {
	DB, Name string
	Type     string   // collection, view, timeseries
	Options  bson.Raw // create options (capped, validator, collation, viewOn, …)
	Indexes  []bson.Raw
}

func listCollections(ctx context.Context, c *mongo.Client) ([]collection, error) {
	dbs, err := c.ListDatabaseNames(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	var out []collection
	for _, db := range dbs {
		if oplog.Internal(db + ".x") {
			continue
		}
		cur, err := c.Database(db).ListCollections(ctx, bson.D{})
		if err != nil {
			return nil, fmt.Errorf("list collections of %s: %w", db, err)
		}
		var specs []struct {
			Name    string   `bson:"name"`
			Type    string   `bson:"type"`
			Options bson.Raw `bson:"options"`
		}
		if err := cur.All(ctx, &specs); err != nil {
			return nil, fmt.Errorf("list collections of %s: %w", db, err)
		}
		for _, s := range specs {
			if oplog.Internal(db + "." + s.Name) {
				continue
			}
			col := collection{DB: db, Name: s.Name, Type: s.Type, Options: s.Options}
			if col.Type == "" {
				col.Type = "collection"
			}
			if col.Type != "view" {
				if col.Indexes, err = listIndexes(ctx, c.Database(db).Collection(s.Name)); err != nil {
					return nil, err
				}
			}
			out = append(out, col)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DB+"."+out[i].Name < out[j].DB+"."+out[j].Name })
	return out, nil
}

func listIndexes(ctx context.Context, coll *mongo.Collection) ([]bson.Raw, error) {
	cur, err := coll.Indexes().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list indexes of %s.%s: %w", coll.Database().Name(), coll.Name(), err)
	}
	var out []bson.Raw
	for cur.Next(ctx) {
		out = append(out, append(bson.Raw(nil), cur.Current...))
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("list indexes of %s.%s: %w", coll.Database().Name(), coll.Name(), err)
	}
	return out, nil
}

type scanner struct {
	cfg   Config
	c     *mongo.Client
	w     *archive.ChunkWriter
	docs  atomic.Int64
	bytes atomic.Int64
	total int64 // documents expected, from the collections' counts (for progress)
}

// scanAll scans up to Jobs collections at once; the first failure stops
// the rest.
func (s *scanner) scanAll(ctx context.Context, colls []collection) ([]archive.FileEntry, error) {
	if s.cfg.Progress != nil {
		// The metadata's estimates: cheap, and enough for an ETA.
		for _, col := range colls {
			if n, err := s.c.Database(col.DB).Collection(col.Name).EstimatedDocumentCount(ctx); err == nil {
				s.total += n
			}
		}
		s.cfg.Progress(0, 0, s.total)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.Jobs)
	files := make([]archive.FileEntry, len(colls))
	for i, col := range colls {
		if gctx.Err() != nil {
			break // a scan failed or ctx ended: start no more
		}
		g.Go(func() error {
			f, err := s.scan(gctx, col)
			files[i] = f
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	// Ended before every scan was started, and those started succeeded.
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return files, nil
}

// scanBatch is the find batch size: large enough that round trips do not
// dominate, small enough to keep a batch of big documents in memory.
const scanBatch = 2000

// scan stores one collection: its documents, raw BSON back to back, as a
// content-defined chunked file named by its namespace (so an unchanged
// collection deduplicates against the previous backup), and its options
// and indexes in the entry's Extra.
func (s *scanner) scan(ctx context.Context, col collection) (archive.FileEntry, error) {
	ns := col.DB + "." + col.Name
	meta := CollectionMeta{Type: col.Type}
	var err error
	if len(col.Options) > 0 {
		if meta.Options, err = extJSON(col.Options); err != nil {
			return archive.FileEntry{}, fmt.Errorf("options of %s: %w", ns, err)
		}
	}
	for _, ix := range col.Indexes {
		j, err := extJSON(ix)
		if err != nil {
			return archive.FileEntry{}, fmt.Errorf("index of %s: %w", ns, err)
		}
		meta.Indexes = append(meta.Indexes, j)
	}
	f := archive.FileEntry{Path: ns}
	if col.Type != "view" {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(s.read(ctx, col, pw, &meta.Documents, &f.Size)) }()
		f.Chunks, err = s.w.WriteFile(ctx, pr, archive.ContentDefined)
		pr.CloseWithError(err)
		if err != nil {
			return archive.FileEntry{}, fmt.Errorf("back up %s: %w", ns, err)
		}
	}
	if f.Extra, err = json.Marshal(meta); err != nil {
		return archive.FileEntry{}, err
	}
	return f, nil
}

// read writes every document of col to w in _id order (so the byte
// stream of an unchanged collection is the same from backup to backup).
func (s *scanner) read(ctx context.Context, col collection, w io.Writer, docs, size *int64) error {
	cur, err := s.c.Database(col.DB).Collection(col.Name).Find(ctx, bson.D{},
		options.Find().SetBatchSize(scanBatch).SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return fmt.Errorf("scan %s.%s: %w", col.DB, col.Name, err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		if _, err := w.Write(cur.Current); err != nil {
			return err
		}
		*docs++
		*size += int64(len(cur.Current))
		n, b := s.docs.Add(1), s.bytes.Add(int64(len(cur.Current)))
		if s.cfg.Progress != nil && n%1000 == 0 {
			s.cfg.Progress(n, b, max(s.total, n))
		}
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("scan %s.%s: %w", col.DB, col.Name, err)
	}
	return nil
}

func extJSON(raw bson.Raw) (json.RawMessage, error) {
	b, err := bson.MarshalExtJSON(raw, true, false)
	return json.RawMessage(b), err
}
