package mongodb

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tidemark/tidemark/oplog"
)

// Server error codes a replayed command tolerates: replay is idempotent,
// so the effect may already be there.
const (
	codeNamespaceNotFound = 26
	codeIndexNotFound     = 27
	codeNamespaceExists   = 48
)

// command replays a c entry (or a command inside applyOps). ns is the
// entry's "<db>.$cmd"; e carries the session fields of transactions.
func (a *applier) command(ns string, o bson.Raw, e oplog.Entry) error {
	elems, err := o.Elements()
	if err != nil || len(elems) == 0 {
		return fmt.Errorf("command entry: %v", err)
	}
	name := elems[0].Key()
	// Most commands name their collection (or namespace) in the first
	// field; a value of another type is a damaged entry, not a guess.
	arg, isString := elems[0].Value().StringValueOK()
	switch name {
	case "applyOps", "commitTransaction", "abortTransaction", "dropDatabase":
	default:
		if !isString {
			return fmt.Errorf("command %s: its argument is %s, not a name", name, elems[0].Value().Type)
		}
	}
	db, _, _ := strings.Cut(ns, ".")
	ctx := a.ctx
	switch name {
	case "applyOps":
		return a.applyOps(o, e)
	case "commitTransaction":
		key := txnKey(e)
		t, ok := a.txns[key]
		if !ok {
			return fmt.Errorf("commitTransaction for a transaction whose prepare is not in the replayed range")
		}
		delete(a.txns, key)
		return a.applyAll(t.ops)
	case "abortTransaction":
		delete(a.txns, txnKey(e))
		return nil
	case "create":
		target := db + "." + arg
		if !a.wanted(target) {
			return nil
		}
		return tolerate(a.c.Database(db).RunCommand(ctx, o).Err(), codeNamespaceExists)
	case "drop":
		if !a.wanted(db + "." + arg) {
			return nil
		}
		return tolerate(a.c.Database(db).RunCommand(ctx, o).Err(), codeNamespaceNotFound)
	case "collMod", "convertToCapped", "emptycapped":
		if !a.wanted(db + "." + arg) {
			return nil
		}
		return tolerate(a.c.Database(db).RunCommand(ctx, o).Err(), codeNamespaceNotFound)
	case "renameCollection":
		from := arg
		to, _ := o.Lookup("to").StringValueOK()
		if !a.wanted(from) && !a.wanted(to) {
			return nil
		}
		cmd := bson.D{{Key: "renameCollection", Value: from}, {Key: "to", Value: to}}
		if dt, ok := o.Lookup("dropTarget").BooleanOK(); ok {
			cmd = append(cmd, bson.E{Key: "dropTarget", Value: dt})
		} else if _, err := o.LookupErr("dropTarget"); err == nil {
			cmd = append(cmd, bson.E{Key: "dropTarget", Value: true}) // a UUID: the target was dropped
		}
		return tolerate(a.c.Database("admin").RunCommand(ctx, cmd).Err(), codeNamespaceNotFound)
	case "dropDatabase":
		if oplog.Internal(db + ".x") {
			return nil
		}
		if a.include == nil {
			return a.c.Database(db).Drop(ctx)
		}
		names, err := a.c.Database(db).ListCollectionNames(ctx, bson.D{})
		if err != nil {
			return err
		}
		for _, n := range names {
			if a.wanted(db + "." + n) {
				if err := a.c.Database(db).Collection(n).Drop(ctx); err != nil {
					return err
				}
			}
		}
		return nil
	case "createIndexes":
		coll := arg
		if !a.wanted(db + "." + coll) {
			return nil
		}
		var spec bson.D
		if err := bson.Unmarshal(o, &spec); err != nil {
			return err
		}
		return createIndexes(a, db, coll, []bson.D{spec[1:]})
	case "commitIndexBuild":
		coll := arg
		if !a.wanted(db + "." + coll) {
			return nil
		}
		specs, ok := o.Lookup("indexes").ArrayOK()
		if !ok {
			return fmt.Errorf("commitIndexBuild without indexes")
		}
		vals, err := specs.Values()
		if err != nil {
			return err
		}
		var arr []bson.D
		for _, v := range vals {
			var spec bson.D
			if err := v.Unmarshal(&spec); err != nil {
				return fmt.Errorf("commitIndexBuild index: %w", err)
			}
			arr = append(arr, spec)
		}
		return createIndexes(a, db, coll, arr)
	case "startIndexBuild", "abortIndexBuild":
		return nil // the index appears at commitIndexBuild
	case "dropIndexes", "deleteIndexes":
		coll := arg
		if !a.wanted(db + "." + coll) {
			return nil
		}
		cmd := bson.D{{Key: "dropIndexes", Value: coll}, {Key: "index", Value: o.Lookup("index")}}
		return tolerate(a.c.Database(db).RunCommand(ctx, cmd).Err(), codeIndexNotFound, codeNamespaceNotFound)
	default:
		return fmt.Errorf("command %q in the oplog is not supported by replay", name)
	}
}

func createIndexes(a *applier, db, coll string, specs []bson.D) error {
	return runCreateIndexes(a.ctx, a.c, db, coll, specs)
}

// runCreateIndexes builds indexes from specs as listIndexes or the oplog
// gives them, leaving out what describes the old index rather than the
// wanted one (its format version, the namespace of old servers).
func runCreateIndexes(ctx context.Context, c *mongo.Client, db, coll string, specs []bson.D) error {
	var arr bson.A
	for _, s := range specs {
		if name, _ := get(s, "name"); name == "_id_" {
			continue
		}
		arr = append(arr, del(del(cloneD(s), "ns"), "v"))
	}
	if len(arr) == 0 {
		return nil
	}
	cmd := bson.D{{Key: "createIndexes", Value: coll}, {Key: "indexes", Value: arr}}
	return c.Database(db).RunCommand(ctx, cmd).Err()
}

// applyOps: a batch applied as a unit (no session), or a transaction's
// ops — buffered through partialTxn entries chained by prevOpTime, and
// for a prepared transaction until its commitTransaction.
func (a *applier) applyOps(o bson.Raw, e oplog.Entry) error {
	arr, ok := o.Lookup("applyOps").ArrayOK()
	if !ok {
		return fmt.Errorf("applyOps is not an array")
	}
	vals, err := arr.Values()
	if err != nil {
		return err
	}
	ops := make([]bson.Raw, 0, len(vals))
	for _, v := range vals {
		d, ok := v.DocumentOK()
		if !ok {
			return fmt.Errorf("applyOps element is not a document")
		}
		ops = append(ops, d)
	}
	_, noSession := e.Raw.LookupErr("lsid")
	_, multiErr := e.Raw.LookupErr("multiOpType")
	if noSession != nil || multiErr == nil {
		// Not a transaction: batched deletes, or a retryable write's
		// vectored insert (multiOpType 1, whose prevOpTime chains to the
		// session's previous write, not to buffered ops).
		return a.applyAll(ops)
	}
	key := txnKey(e)
	t := a.txns[key]
	if prev, ok := e.Raw.Lookup("prevOpTime").DocumentOK(); ok {
		pt, pi, _ := prev.Lookup("ts").TimestampOK()
		p := oplog.TS{T: pt, I: pi}
		if !p.IsZero() && (t == nil || t.last != p) {
			return fmt.Errorf("transaction entry at %s follows %s, which is not in the replayed range", e.TS, p)
		}
	}
	if t == nil {
		t = &txnBuffer{}
		a.txns[key] = t
	}
	t.ops = append(t.ops, ops...)
	t.last = e.TS
	if partial, _ := o.Lookup("partialTxn").BooleanOK(); partial {
		return nil
	}
	if prepare, _ := o.Lookup("prepare").BooleanOK(); prepare {
		return nil
	}
	delete(a.txns, key)
	return a.applyAll(t.ops)
}

// applyAll applies ops from an applyOps array in order.
func (a *applier) applyAll(ops []bson.Raw) error {
	for _, raw := range ops {
		op, _ := raw.Lookup("op").StringValueOK()
		ns, _ := raw.Lookup("ns").StringValueOK()
		o, _ := raw.Lookup("o").DocumentOK()
		o2, _ := raw.Lookup("o2").DocumentOK()
		switch op {
		case "i", "u", "d":
			if err := a.dispatch(write{op: op, ns: ns, o: o, o2: o2}); err != nil {
				return err
			}
		case "c":
			if err := a.barrier(); err != nil {
				return err
			}
			if err := a.command(ns, o, oplog.Entry{}); err != nil {
				return err
			}
		case "n":
		default:
			return fmt.Errorf("applyOps: unknown op %q", op)
		}
	}
	return nil
}

// txnKey identifies a transaction: its session and number.
func txnKey(e oplog.Entry) string {
	return e.Raw.Lookup("lsid").String() + "/" + e.Raw.Lookup("txnNumber").String()
}

func tolerate(err error, codes ...int) error {
	var se mongo.ServerError
	if err == nil || !errors.As(err, &se) {
		return err
	}
	for _, c := range codes {
		if se.HasErrorCode(c) {
			return nil
		}
	}
	return err
}
