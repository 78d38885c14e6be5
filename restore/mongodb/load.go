package mongodb

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"golang.org/x/sync/errgroup"

	"github.com/tidemark/tidemark/archive"
	mongobackup "github.com/tidemark/tidemark/basebackup/mongodb"
	"github.com/tidemark/tidemark/restore"
)

type loader struct {
	cfg     Config
	c       *mongo.Client
	include func(string) bool
}

type collection struct {
	db, name string
	file     archive.FileEntry
	meta     mongobackup.CollectionMeta
}

func (c collection) ns() string { return c.db + "." + c.name }

// prepare selects the backup's collections, refuses (or with Force drops)
// those that exist in the target, and creates them with their options:
// collections first, then views, which need their sources.
func (l *loader) prepare(ctx context.Context, m *archive.Manifest) ([]collection, error) {
	var colls []collection
	for _, f := range m.Files {
		db, name, ok := strings.Cut(f.Path, ".")
		if !ok {
			return nil, fmt.Errorf("backup %s: file %q is not a namespace: %w", m.ID, f.Path, archive.ErrCorrupt)
		}
		if l.include != nil && !l.include(f.Path) {
			continue
		}
		c := collection{db: db, name: name, file: f}
		if err := json.Unmarshal(f.Extra, &c.meta); err != nil {
			return nil, fmt.Errorf("backup %s: %s: %w: %v", m.ID, f.Path, archive.ErrCorrupt, err)
		}
		colls = append(colls, c)
	}
	var exist []string
	for _, c := range colls {
		names, err := l.c.Database(c.db).ListCollectionNames(ctx, bson.D{{Key: "name", Value: c.name}})
		if err != nil {
			return nil, fmt.Errorf("check target for %s: %w", c.ns(), err)
		}
		if len(names) > 0 {
			exist = append(exist, c.ns())
		}
	}
	if len(exist) > 0 && !l.cfg.Force {
		return nil, fmt.Errorf("%w: %s (drop them, choose --ns, or pass --force to replace them)", restore.ErrTargetExists, strings.Join(exist, ", "))
	}
	for _, ns := range exist {
		db, name, _ := strings.Cut(ns, ".")
		if err := l.c.Database(db).Collection(name).Drop(ctx); err != nil {
			return nil, fmt.Errorf("drop %s (--force): %w", ns, err)
		}
	}
	for _, views := range []bool{false, true} {
		for _, c := range colls {
			if (c.meta.Type == "view") != views {
				continue
			}
			cmd := bson.D{{Key: "create", Value: c.name}}
			if len(c.meta.Options) > 0 {
				var opts bson.D
				if err := bson.UnmarshalExtJSON(c.meta.Options, true, &opts); err != nil {
					return nil, fmt.Errorf("options of %s: %w: %v", c.ns(), archive.ErrCorrupt, err)
				}
				cmd = append(cmd, opts...)
			}
			if err := l.c.Database(c.db).RunCommand(ctx, cmd).Err(); err != nil {
				return nil, fmt.Errorf("create %s: %w", c.ns(), err)
			}
		}
	}
	return colls, nil
}

// insertBatch bounds a batch of documents by count and bytes.
const (
	insertBatchDocs  = 1000
	insertBatchBytes = 8 << 20
)

type docBatch struct {
	coll *mongo.Collection
	docs []any
}

// load inserts every collection's documents: one reader decodes the
// chunks in order, Jobs writers insert unordered batches in parallel; the
// first failure stops both.
func (l *loader) load(ctx context.Context, colls []collection) (int64, error) {
	g, ctx := errgroup.WithContext(ctx)
	batches := make(chan docBatch, l.cfg.Jobs)
	var done atomic.Int64
	var total int64
	for _, c := range colls {
		total += c.meta.Documents
	}
	for range l.cfg.Jobs {
		g.Go(func() error {
			for b := range batches {
				if ctx.Err() != nil {
					return context.Cause(ctx) // leave the queued batches after a failure
				}
				if _, err := b.coll.InsertMany(ctx, b.docs, options.InsertMany().SetOrdered(false)); err != nil {
					return fmt.Errorf("insert into %s.%s: %w", b.coll.Database().Name(), b.coll.Name(), err)
				}
				l.cfg.Progress("load", done.Add(int64(len(b.docs))), total)
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(batches)
		for _, c := range colls {
			if c.meta.Type == "view" {
				continue
			}
			if err := l.read(ctx, c, batches); err != nil {
				return err
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return done.Load(), nil
}

// read decodes one collection's documents into batches.
func (l *loader) read(ctx context.Context, c collection, out chan<- docBatch) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(l.cfg.Repo.ReadChunks(ctx, c.file.Chunks, pw, 2)) }()
	defer pr.Close()
	br := bufio.NewReaderSize(pr, 1<<20)
	coll := l.c.Database(c.db).Collection(c.name)
	var (
		docs  []any
		bytes int
		n     int64
	)
	send := func() error {
		if len(docs) == 0 {
			return nil
		}
		select {
		case out <- docBatch{coll: coll, docs: docs}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		docs, bytes = nil, 0
		return nil
	}
	for {
		doc, err := readDoc(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("restore %s: %w", c.ns(), err)
		}
		docs = append(docs, doc)
		bytes += len(doc)
		n++
		if len(docs) >= insertBatchDocs || bytes >= insertBatchBytes {
			if err := send(); err != nil {
				return err
			}
		}
	}
	if n != c.meta.Documents {
		return fmt.Errorf("restore %s: %w: %d documents in the backup, its manifest says %d", c.ns(), archive.ErrCorrupt, n, c.meta.Documents)
	}
	return send()
}

// readDoc reads one length-prefixed BSON document.
func readDoc(r io.Reader) (bson.Raw, error) {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%w: truncated document", archive.ErrCorrupt)
		}
		return nil, err
	}
	n := binary.LittleEndian.Uint32(l[:])
	if n < 5 || n > 17<<20 {
		return nil, fmt.Errorf("%w: document of %d bytes", archive.ErrCorrupt, n)
	}
	doc := make([]byte, n)
	copy(doc, l[:])
	if _, err := io.ReadFull(r, doc[4:]); err != nil {
		return nil, fmt.Errorf("%w: truncated document", archive.ErrCorrupt)
	}
	if err := bson.Raw(doc).Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", archive.ErrCorrupt, err)
	}
	return doc, nil
}

// indexes builds each collection's secondary indexes (the _id index came
// with the collection).
func (l *loader) indexes(ctx context.Context, colls []collection) error {
	for _, c := range colls {
		var specs []bson.D
		for _, j := range c.meta.Indexes {
			var spec bson.D
			if err := bson.UnmarshalExtJSON(j, true, &spec); err != nil {
				return fmt.Errorf("index of %s: %w: %v", c.ns(), archive.ErrCorrupt, err)
			}
			specs = append(specs, spec)
		}
		if err := runCreateIndexes(ctx, l.c, c.db, c.name, specs); err != nil {
			return fmt.Errorf("build indexes of %s: %w", c.ns(), err)
		}
	}
	return nil
}
