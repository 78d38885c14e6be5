package basebackup

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tidemark/tidemark/archive"
)

// scanBatch is the find batch size: large enough that round trips do not
// dominate, small enough to keep a batch of big documents in memory.
const scanBatch = 2000

// scan stores one collection: its documents, raw BSON back to back, as a
// content-defined chunked file named by its namespace (so an unchanged
// collection deduplicates against the previous backup), and its options
// and indexes in the entry's Extra.
func (s *mongoScan) scan(ctx context.Context, col collection) (archive.FileEntry, error) {
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
func (s *mongoScan) read(ctx context.Context, col collection, w io.Writer, docs, size *int64) error {
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
			s.cfg.Progress(n, b)
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
