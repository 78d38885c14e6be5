package mongodb

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/oplog"
)

// Oplog entries as MongoDB 6/7 writes them (shapes from MongoDB's
// documentation of the oplog and of transactions, and from mongo-tools'
// test data), replayed with MongoDB semantics into a real server. FerretDB
// serves as the target: replay uses only ordinary commands it supports.

const (
	lsid    = `"lsid": {"id": {"$binary": {"base64": "3Zz9ZbRmR2SKVdw4TQ4cKw==", "subType": "04"}}, "uid": {"$binary": {"base64": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "subType": "00"}}}`
	noPrev  = `"prevOpTime": {"ts": {"$timestamp": {"t": 0, "i": 0}}, "t": {"$numberLong": "-1"}}`
	uiField = `"ui": {"$binary": {"base64": "n8vWMZ9YSbOYfWBJqR1J7w==", "subType": "04"}}`
)

func oplogEntry(t *testing.T, ts int, body string) oplog.Entry {
	t.Helper()
	s := fmt.Sprintf(`{"ts": {"$timestamp": {"t": 1764500000, "i": %d}}, "t": {"$numberLong": "1"}, "v": {"$numberLong": "2"}, "wall": {"$date": "2025-11-30T10:53:20Z"}, %s}`, ts, body)
	var d bson.D
	if err := bson.UnmarshalExtJSON([]byte(s), false, &d); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	e, err := oplog.ParseEntry(rawOf(t, d))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type opsFixture struct {
	t  *testing.T
	c  *mongo.Client
	db string
	a  *applier
}

func newOps(t *testing.T, include func(string) bool) *opsFixture {
	t.Helper()
	f := testenv.FerretDBServer(t)
	c, err := f.Client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(context.Background()) })
	db := strings.NewReplacer("/", "_", " ", "_", ":", "_", "$", "_").Replace(t.Name())
	if len(db) > 40 {
		db = db[len(db)-40:]
	}
	c.Database(db).Drop(context.Background())
	a := newApplier(context.Background(), c, oplog.FlavourMongoDB, 3, include, slog.Default())
	return &opsFixture{t: t, c: c, db: db, a: a}
}

// apply replays entries (with "DB" standing for the test's database) and
// waits for them.
func (x *opsFixture) apply(entries ...string) error {
	x.t.Helper()
	for i, s := range entries {
		if err := x.a.apply(oplogEntry(x.t, i+1, strings.ReplaceAll(s, "DB", x.db))); err != nil {
			return err
		}
	}
	return x.a.barrier()
}

func (x *opsFixture) must(entries ...string) {
	x.t.Helper()
	if err := x.apply(entries...); err != nil {
		x.t.Fatal(err)
	}
}

// docs returns a collection's documents in _id order as Extended JSON.
func (x *opsFixture) docs(coll string) string {
	x.t.Helper()
	cur, err := x.c.Database(x.db).Collection(coll).Find(context.Background(), bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		x.t.Fatal(err)
	}
	var out []string
	for cur.Next(context.Background()) {
		out = append(out, jsonOf(x.t, cur.Current))
	}
	return strings.Join(out, " ")
}

func (x *opsFixture) collections() string {
	x.t.Helper()
	names, err := x.c.Database(x.db).ListCollectionNames(context.Background(), bson.D{})
	if err != nil {
		x.t.Fatal(err)
	}
	sortStrings(names)
	return strings.Join(names, ",")
}

func (x *opsFixture) indexes(coll string) string {
	x.t.Helper()
	specs, err := x.c.Database(x.db).Collection(coll).Indexes().ListSpecifications(context.Background())
	if err != nil {
		x.t.Fatal(err)
	}
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	sortStrings(names)
	return strings.Join(names, ",")
}

func expectJSON(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s:\ngot  %s\nwant %s", what, got, want)
	}
}

func TestReplayCRUD(t *testing.T) {
	x := newOps(t, nil)
	x.must(
		`"op": "i", "ns": "DB.c", `+uiField+`, "o": {"_id": 1, "a": 1, "arr": [1, 2, 3]}`,
		`"op": "i", "ns": "DB.c", `+uiField+`, "o": {"_id": 2, "a": 2}, "o2": {"_id": 2}`,
		`"op": "u", "ns": "DB.c", `+uiField+`, "o": {"$v": 2, "diff": {"u": {"a": 10}, "i": {"b": "x"}, "sarr": {"a": true, "l": 2, "u1": 20}}}, "o2": {"_id": 1}`,
		`"op": "u", "ns": "DB.c", `+uiField+`, "o": {"_id": 2, "replaced": true}, "o2": {"_id": 2}`,
		`"op": "n", "ns": "", "o": {"msg": "periodic noop"}`,
		`"op": "i", "ns": "DB.c", "o": {"_id": 3}`,
		`"op": "d", "ns": "DB.c", `+uiField+`, "o": {"_id": 3}`,
		// Updates of a document the restore does not hold are skipped:
		// a later entry deletes or recreates it.
		`"op": "u", "ns": "DB.c", "o": {"$v": 2, "diff": {"u": {"a": 1}}}, "o2": {"_id": 99}`,
		// Internal namespaces are never replayed.
		`"op": "i", "ns": "config.system.sessions", "o": {"_id": {"id": 1}, "lastUse": {"$date": "2025-11-30T10:53:20Z"}}`,
		`"op": "i", "ns": "DB.system.views", "o": {"_id": "DB.v", "viewOn": "c", "pipeline": []}`,
	)
	expectJSON(t, "documents", x.docs("c"), `{"_id":1,"a":10,"arr":[1,20],"b":"x"} {"_id":2,"replaced":true}`)
	expectJSON(t, "collections", x.collections(), "c")
	// Replaying the same entries again (a fuzzy base) changes nothing.
	x.must(`"op": "u", "ns": "DB.c", "o": {"$v": 2, "diff": {"u": {"a": 10}, "i": {"b": "x"}}}, "o2": {"_id": 1}`,
		`"op": "d", "ns": "DB.c", "o": {"_id": 3}`)
	expectJSON(t, "documents after re-replay", x.docs("c"), `{"_id":1,"a":10,"arr":[1,20],"b":"x"} {"_id":2,"replaced":true}`)
	if err := x.a.close(); err != nil {
		t.Fatal(err)
	}
}

func TestReplayTransactions(t *testing.T) {
	x := newOps(t, nil)
	// A large unprepared transaction: partialTxn entries chained by
	// prevOpTime, applied only at the final applyOps.
	x.must(
		`"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [{"op": "i", "ns": "DB.t", `+uiField+`, "o": {"_id": 1}}], "partialTxn": true}, `+lsid+`, "txnNumber": {"$numberLong": "7"}, `+noPrev,
		`"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [{"op": "i", "ns": "DB.t", `+uiField+`, "o": {"_id": 2}}], "partialTxn": true}, `+lsid+`, "txnNumber": {"$numberLong": "7"}, "prevOpTime": {"ts": {"$timestamp": {"t": 1764500000, "i": 1}}, "t": {"$numberLong": "1"}}`,
	)
	expectJSON(t, "before the commit", x.docs("t"), "")
	if err := x.a.apply(oplogEntry(t, 3, strings.ReplaceAll(`"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [{"op": "u", "ns": "DB.t", `+uiField+`, "o": {"$v": 2, "diff": {"i": {"x": 1}}}, "o2": {"_id": 1}}], "count": {"$numberLong": "3"}}, `+lsid+`, "txnNumber": {"$numberLong": "7"}, "prevOpTime": {"ts": {"$timestamp": {"t": 1764500000, "i": 2}}, "t": {"$numberLong": "1"}}`, "DB", x.db))); err != nil {
		t.Fatal(err)
	}
	x.a.barrier()
	expectJSON(t, "after the commit", x.docs("t"), `{"_id":1,"x":1} {"_id":2}`)

	// Prepared transactions: applied at commitTransaction, dropped at abort.
	x = newOps(t, nil)
	x.must(
		`"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [{"op": "i", "ns": "DB.p", "o": {"_id": "committed"}}], "prepare": true}, `+lsid+`, "txnNumber": {"$numberLong": "8"}, `+noPrev,
		`"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [{"op": "i", "ns": "DB.p", "o": {"_id": "aborted"}}], "prepare": true}, "lsid": {"id": {"$binary": {"base64": "AAAAAAAAAAAAAAAAAAAAAA==", "subType": "04"}}}, "txnNumber": {"$numberLong": "1"}, `+noPrev,
	)
	expectJSON(t, "prepared, not committed", x.docs("p"), "")
	x.must(
		`"op": "n", "ns": "", "o": {"msg": "pad"}`,
		`"op": "n", "ns": "", "o": {"msg": "pad"}`,
		`"op": "c", "ns": "admin.$cmd", "o": {"commitTransaction": 1, "commitTimestamp": {"$timestamp": {"t": 1764500000, "i": 3}}}, `+lsid+`, "txnNumber": {"$numberLong": "8"}, "prevOpTime": {"ts": {"$timestamp": {"t": 1764500000, "i": 1}}, "t": {"$numberLong": "1"}}`,
		`"op": "c", "ns": "admin.$cmd", "o": {"abortTransaction": 1}, "lsid": {"id": {"$binary": {"base64": "AAAAAAAAAAAAAAAAAAAAAA==", "subType": "04"}}}, "txnNumber": {"$numberLong": "1"}, "prevOpTime": {"ts": {"$timestamp": {"t": 1764500000, "i": 2}}, "t": {"$numberLong": "1"}}`,
	)
	expectJSON(t, "after commit and abort", x.docs("p"), `{"_id":"committed"}`)

	// applyOps without a session (batched deletes) applies at once.
	x.must(`"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [{"op": "d", "ns": "DB.p", "o": {"_id": "committed"}}, {"op": "i", "ns": "DB.p", "o": {"_id": "batched"}}]}`)
	expectJSON(t, "after a batch", x.docs("p"), `{"_id":"batched"}`)
	if err := x.a.close(); err != nil {
		t.Fatal(err)
	}
}

func TestReplayBrokenTransactionChain(t *testing.T) {
	x := newOps(t, nil)
	err := x.apply(`"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [{"op": "i", "ns": "DB.t", "o": {"_id": 1}}]}, ` + lsid + `, "txnNumber": {"$numberLong": "9"}, "prevOpTime": {"ts": {"$timestamp": {"t": 1764499999, "i": 5}}, "t": {"$numberLong": "1"}}`)
	if err == nil || !strings.Contains(err.Error(), "not in the replayed range") {
		t.Fatalf("commit of a transaction whose start is missing: %v", err)
	}
	err = x.apply(`"op": "c", "ns": "admin.$cmd", "o": {"commitTransaction": 1}, ` + lsid + `, "txnNumber": {"$numberLong": "10"}`)
	if err == nil {
		t.Fatal("commitTransaction without its prepare: no error")
	}
}

func TestReplayCommands(t *testing.T) {
	x := newOps(t, nil)
	x.must(
		`"op": "c", "ns": "DB.$cmd", `+uiField+`, "o": {"create": "a", "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"}}`,
		`"op": "c", "ns": "DB.$cmd", `+uiField+`, "o": {"create": "a", "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"}}`, // replayed twice: tolerated
		`"op": "i", "ns": "DB.a", "o": {"_id": 1, "k": 5}`,
		`"op": "c", "ns": "DB.$cmd", `+uiField+`, "o": {"createIndexes": "a", "v": 2, "key": {"k": 1}, "name": "k_1"}`,
		`"op": "c", "ns": "DB.$cmd", `+uiField+`, "o": {"startIndexBuild": "a", "indexBuildUUID": {"$binary": {"base64": "n8vWMZ9YSbOYfWBJqR1J7w==", "subType": "04"}}, "indexes": [{"v": 2, "key": {"j": 1}, "name": "j_1"}]}`,
		`"op": "c", "ns": "DB.$cmd", `+uiField+`, "o": {"commitIndexBuild": "a", "indexBuildUUID": {"$binary": {"base64": "n8vWMZ9YSbOYfWBJqR1J7w==", "subType": "04"}}, "indexes": [{"v": 2, "key": {"j": 1}, "name": "j_1"}]}`,
	)
	expectJSON(t, "indexes", x.indexes("a"), "_id_,j_1,k_1")
	x.must(
		`"op": "c", "ns": "DB.$cmd", `+uiField+`, "o": {"dropIndexes": "a", "index": "k_1"}, "o2": {"v": 2, "key": {"k": 1}, "name": "k_1"}`,
		`"op": "c", "ns": "DB.$cmd", `+uiField+`, "o": {"dropIndexes": "a", "index": "k_1"}, "o2": {"v": 2, "key": {"k": 1}, "name": "k_1"}`,
		`"op": "c", "ns": "DB.$cmd", `+uiField+`, "o": {"renameCollection": "DB.a", "to": "DB.b", "stayTemp": false}`,
		`"op": "c", "ns": "DB.$cmd", "o": {"create": "gone"}`,
		`"op": "c", "ns": "DB.$cmd", "o": {"drop": "gone"}, "o2": {"numRecords": 0}`,
		`"op": "c", "ns": "DB.$cmd", "o": {"drop": "gone"}, "o2": {"numRecords": 0}`,
	)
	expectJSON(t, "indexes after drop and rename", x.indexes("b"), "_id_,j_1")
	expectJSON(t, "collections", x.collections(), "b")
	expectJSON(t, "renamed documents", x.docs("b"), `{"_id":1,"k":5}`)
	x.must(`"op": "c", "ns": "DB.$cmd", "o": {"dropDatabase": 1}`)
	expectJSON(t, "after dropDatabase", x.collections(), "")
	if err := x.apply(`"op": "c", "ns": "DB.$cmd", "o": {"frobnicate": 1}`); err == nil {
		t.Fatal("an unknown command was not refused")
	}
}

func TestReplayNamespaceFilter(t *testing.T) {
	include, err := nsFilter([]string{"TestReplayNamespaceFilter.keep"})
	if err != nil {
		t.Fatal(err)
	}
	x := newOps(t, include)
	x.must(
		`"op": "i", "ns": "DB.keep", "o": {"_id": 1}`,
		`"op": "i", "ns": "DB.skip", "o": {"_id": 1}`,
		`"op": "c", "ns": "DB.$cmd", "o": {"create": "other"}`,
		`"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [{"op": "i", "ns": "DB.keep", "o": {"_id": 2}}, {"op": "i", "ns": "DB.skip", "o": {"_id": 2}}]}`,
	)
	expectJSON(t, "collections", x.collections(), "keep")
	expectJSON(t, "kept", x.docs("keep"), `{"_id":1} {"_id":2}`)
	for _, bad := range []string{"nodot", ".x", "db."} {
		if _, err := nsFilter([]string{bad}); err == nil {
			t.Errorf("--ns %q accepted", bad)
		}
	}
}
