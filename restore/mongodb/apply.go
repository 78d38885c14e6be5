package mongodb

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tidemark/tidemark/oplog"
)

// An applier replays oplog entries through ordinary driver writes —
// never the applyOps command, which FerretDB lacks and which applies one
// op per round trip. Writes to documents run in parallel, partitioned by
// hash(namespace, _id) so each document's writes keep their order; every
// command is a barrier (all earlier writes finish first, later ones wait).
// Replay is idempotent: a base scanned while writes went on already holds
// some of the replayed effects.
//
// The workers are not an errgroup: each owns one partition's queue, and
// a barrier waits for the queued writes while the workers live on for the
// rest of the replay, which errgroup.Wait (the end of the group) cannot do.
type applier struct {
	c       *mongo.Client
	flavour string
	include func(ns string) bool // --ns selection (nil: all)
	log     *slog.Logger

	ctx     context.Context
	cancel  context.CancelCauseFunc
	workers []chan write
	pending sync.WaitGroup
	done    sync.WaitGroup
	txns    map[string]*txnBuffer
	applied atomic.Int64
	flushes atomic.Int64    // batches written, for tests
	skipped map[string]bool // time-series namespaces already warned about
}

// write is one document write: a top-level entry or an op inside applyOps.
type write struct {
	op, ns string
	o, o2  bson.Raw
}

// txnBuffer holds a transaction's ops until its commit (a partialTxn
// chain, or a prepared transaction awaiting commitTransaction).
type txnBuffer struct {
	ops  []bson.Raw
	last oplog.TS
}

func newApplier(ctx context.Context, c *mongo.Client, flavour string, jobs int, include func(string) bool, log *slog.Logger) *applier {
	ctx, cancel := context.WithCancelCause(ctx)
	a := &applier{c: c, flavour: flavour, include: include, log: log, ctx: ctx, cancel: cancel, txns: map[string]*txnBuffer{}, skipped: map[string]bool{}}
	for range max(jobs, 1) {
		ch := make(chan write, writeQueue)
		a.workers = append(a.workers, ch)
		a.done.Add(1)
		go func() {
			defer a.done.Done()
			a.work(ch)
		}()
	}
	return a
}

// close waits for every write and returns the first failure.
func (a *applier) close() error {
	for _, ch := range a.workers {
		close(ch)
	}
	a.done.Wait()
	err := context.Cause(a.ctx)
	a.cancel(nil)
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if len(a.txns) > 0 && err == nil {
		a.log.Info("transactions still open at the target are not applied (they had not committed)", "open", len(a.txns))
	}
	return err
}

// barrier waits until every dispatched write is done.
func (a *applier) barrier() error {
	a.pending.Wait()
	return context.Cause(a.ctx)
}

// apply replays one entry.
func (a *applier) apply(e oplog.Entry) error {
	if err := context.Cause(a.ctx); err != nil {
		return err
	}
	switch e.Op {
	case "n":
		return nil
	case "c":
		if err := a.barrier(); err != nil {
			return err
		}
		if err := a.command(e.NS, e.O, e); err != nil {
			return fmt.Errorf("replay command at %s: %w", e.TS, err)
		}
		a.applied.Add(1)
		return nil
	default:
		return a.dispatch(write{op: e.Op, ns: e.NS, o: e.O, o2: e.O2})
	}
}

func (a *applier) wanted(ns string) bool {
	return !oplog.Internal(ns) && (a.include == nil || a.include(ns))
}

// dispatch routes a document write to the worker owning its _id.
func (a *applier) dispatch(w write) error {
	if !a.wanted(w.ns) {
		if db, coll, _ := strings.Cut(w.ns, "."); strings.HasPrefix(coll, "system.buckets.") && !a.skipped[w.ns] &&
			(a.include == nil || a.include(db+"."+strings.TrimPrefix(coll, "system.buckets."))) {
			// Never silent: the restore will lack these measurements.
			a.skipped[w.ns] = true
			a.log.Warn("time-series writes are not replayed: the restored collection holds only the base backup's measurements",
				"collection", db+"."+strings.TrimPrefix(coll, "system.buckets."))
		}
		return nil
	}
	id, err := docID(w)
	if err != nil {
		return err
	}
	h := fnv.New32a()
	h.Write([]byte(w.ns))
	h.Write(id.Value)
	a.pending.Add(1)
	select {
	case a.workers[h.Sum32()%uint32(len(a.workers))] <- w:
		return nil
	case <-a.ctx.Done():
		a.pending.Done()
		return context.Cause(a.ctx)
	}
}

func docID(w write) (bson.RawValue, error) {
	src := w.o
	if w.op == "u" {
		src = w.o2
	}
	id, err := src.LookupErr("_id")
	if err != nil {
		return bson.RawValue{}, fmt.Errorf("%s entry on %s without _id", w.op, w.ns)
	}
	return id, nil
}

func (a *applier) coll(ns string) *mongo.Collection {
	db, coll, _ := strings.Cut(ns, ".")
	return a.c.Database(db).Collection(coll)
}

func mustD(raw bson.Raw) bson.D {
	var d bson.D
	bson.Unmarshal(raw, &d)
	return d
}
