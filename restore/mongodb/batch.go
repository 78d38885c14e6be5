package mongodb

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tidemark/tidemark/oplog"
)

// Replay's writes reach the server in batches, not one round trip per
// entry: a worker takes whatever has queued up for its partition (up to
// maxBatch writes or maxBatchBytes) and applies it collection by
// collection (see flushColl). A document's entries all go to one
// partition, in order. Batches grow by themselves while the server is the
// bottleneck and stay small while it is not.
const (
	writeQueue    = 512
	maxBatch      = 500
	maxBatchBytes = 8 << 20
)

// work runs one partition's writes until its queue is closed.
func (a *applier) work(ch <-chan write) {
	batch := make([]write, 0, maxBatch)
	for w := range ch {
		batch = append(batch[:0], w)
		size := len(w.o) + len(w.o2)
	fill:
		for len(batch) < maxBatch && size < maxBatchBytes {
			select {
			case w, ok := <-ch:
				if !ok {
					break fill
				}
				batch = append(batch, w)
				size += len(w.o) + len(w.o2)
			default:
				break fill
			}
		}
		if a.ctx.Err() == nil {
			if err := a.flush(a.ctx, batch); err != nil {
				a.cancel(err)
			}
		}
		a.pending.Add(-len(batch))
	}
}

// flush applies a batch collection by collection (the collections'
// relative order does not matter: their documents differ, and commands
// wait for every queued write).
func (a *applier) flush(ctx context.Context, batch []write) error {
	a.flushes.Add(1)
	var order []string
	byNS := map[string][]write{}
	for _, w := range batch {
		if _, ok := byNS[w.ns]; !ok {
			order = append(order, w.ns)
		}
		byNS[w.ns] = append(byNS[w.ns], w)
	}
	for _, ns := range order {
		if err := a.flushColl(ctx, a.coll(ns), byNS[ns]); err != nil {
			return fmt.Errorf("replay into %s: %w", ns, err)
		}
		a.applied.Add(int64(len(byNS[ns])))
	}
	return nil
}

// flushColl applies one collection's writes by their net effect: each
// document the batch touches ends either as one whole document or
// absent, so the batch becomes one delete of those _ids and one insert
// of the survivors — two round trips however many entries, where
// per-document upserts cost FerretDB a statement (and, for _id types it
// cannot push down, a collection scan) each. Writing the end state is
// idempotent like the entries themselves.
//
// An update that needs the document as it stands (MongoDB's diffs and
// modifiers) is applied here to a copy: the documents the batch updates
// are read in one query first, and the batch's own earlier writes are
// tracked. A document the target does not hold (deleted later in the
// base's scan) is left alone by such an update: a later entry of the
// replay deletes or recreates it.
func (a *applier) flushColl(ctx context.Context, c *mongo.Collection, ws []write) error {
	state, err := a.readUpdated(ctx, c, ws)
	if err != nil {
		return err
	}
	type end struct {
		id  bson.RawValue
		doc any // nil: absent
	}
	var keys []string
	ends := map[string]*end{}
	set := func(key string, id bson.RawValue, doc any) {
		e, ok := ends[key]
		if !ok {
			e = &end{id: id}
			ends[key] = e
			keys = append(keys, key)
		}
		e.doc = doc
	}
	for _, w := range ws {
		id, err := docID(w)
		if err != nil {
			return err
		}
		key := idKey(id)
		switch w.op {
		case "i":
			set(key, id, w.o)
			if state != nil {
				state[key] = docState{doc: mustD(w.o)}
			}
		case "d":
			set(key, id, nil)
			if state != nil {
				state[key] = docState{}
			}
		case "u":
			doc, ok, err := a.updated(w, bson.D{{Key: "_id", Value: id}}, state, key)
			if err != nil {
				return err
			}
			if ok {
				set(key, id, doc)
			}
		default:
			return fmt.Errorf("unknown op %q", w.op)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	ids := make(bson.A, 0, len(keys))
	var docs []any
	for _, k := range keys {
		ids = append(ids, ends[k].id)
		if ends[k].doc != nil {
			docs = append(docs, ends[k].doc)
		}
	}
	if _, err := c.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}); err != nil {
		return err
	}
	if len(docs) > 0 {
		if _, err := c.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
			return err
		}
	}
	return nil
}

// docState is a document as the batch has left it: doc nil means absent.
type docState struct{ doc bson.D }

func idKey(id bson.RawValue) string { return string(rune(id.Type)) + string(id.Value) }

// updated returns the document an update entry leaves, or false when
// there is none to write. FerretDB v1 logs every update — $set, $unset,
// replaceOne alike — as {$v: 1, $set: <the whole new document>}: read by
// MongoDB's rules that would merge into the old document and keep fields
// that $unset removed, so a FerretDB u is a full replacement. (Capture's
// differences are in oplog/ferretdb.go; FerretDB logs no commands.)
func (a *applier) updated(w write, filter bson.D, state map[string]docState, key string) (any, bool, error) {
	if a.flavour == oplog.FlavourFerretDB {
		doc, ok := w.o.Lookup("$set").DocumentOK()
		if !ok {
			return nil, false, fmt.Errorf("FerretDB update entry without a $set document: %s", w.o)
		}
		return doc, true, nil
	}
	kind, err := updateKind(w.o)
	if err != nil {
		return nil, false, err
	}
	if kind == "replacement" {
		doc := withID(mustD(w.o), filter)
		state[key] = docState{doc: doc}
		return doc, true, nil
	}
	cur := state[key]
	if cur.doc == nil {
		return nil, false, nil
	}
	doc, err := ApplyUpdate(cur.doc, w.o)
	if err != nil {
		return nil, false, err
	}
	state[key] = docState{doc: doc}
	return doc, true, nil
}

// readUpdated reads, in one query, the documents that the batch's
// MongoDB updates need and that no earlier write of the batch sets. It
// returns nil when the batch needs none.
func (a *applier) readUpdated(ctx context.Context, c *mongo.Collection, ws []write) (map[string]docState, error) {
	if a.flavour == oplog.FlavourFerretDB {
		return nil, nil
	}
	set := map[string]bool{}
	var ids bson.A
	for _, w := range ws {
		id, err := docID(w)
		if err != nil {
			return nil, err
		}
		key := idKey(id)
		if w.op != "u" {
			set[key] = true
			continue
		}
		if kind, err := updateKind(w.o); err != nil || kind == "replacement" || set[key] {
			set[key] = true
			continue
		}
		set[key] = true
		ids = append(ids, id)
	}
	state := map[string]docState{}
	if len(ids) == 0 {
		return state, nil
	}
	cur, err := c.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
	if err != nil {
		return nil, fmt.Errorf("read documents to update: %w", err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var d bson.D
		if err := bson.Unmarshal(cur.Current, &d); err != nil {
			return nil, err
		}
		state[idKey(cur.Current.Lookup("_id"))] = docState{doc: d}
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("read documents to update: %w", err)
	}
	return state, nil
}
