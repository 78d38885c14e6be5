package mongodb

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
)

// TestReplayBatched replays a few thousand MongoDB entries — inserts,
// diffs, replacements and deletes of the same few hundred _ids in two
// collections, with a drop of one collection in the middle — through the
// batched, parallel applier, and compares the target with the state the
// entries describe when applied one by one in order. Entries for one _id
// must keep their order across batches; the drop must wait for the writes
// before it and hold back those after it.
func TestReplayBatched(t *testing.T) {
	x := newOps(t, nil)
	r := rand.New(rand.NewPCG(18, 18))
	type doc struct {
		a       int
		replace bool
	}
	want := map[string]map[int]*doc{"c1": {}, "c2": {}}
	var entries []string
	const n = 3000
	for i := range n {
		if i == n/2 {
			entries = append(entries, `"op": "c", "ns": "DB.$cmd", "o": {"drop": "c2"}, "o2": {"numRecords": 0}`)
			want["c2"] = map[int]*doc{}
			continue
		}
		coll := []string{"c1", "c2"}[r.IntN(2)]
		id := r.IntN(300)
		m := want[coll]
		switch k := r.IntN(10); {
		case k < 4:
			entries = append(entries, fmt.Sprintf(`"op": "i", "ns": "DB.%s", "o": {"_id": %d, "a": %d}`, coll, id, i))
			m[id] = &doc{a: i}
		case k < 7:
			entries = append(entries, fmt.Sprintf(`"op": "u", "ns": "DB.%s", "o": {"$v": 2, "diff": {"u": {"a": %d}}}, "o2": {"_id": %d}`, coll, i, id))
			if d := m[id]; d != nil {
				d.a = i
			}
		case k < 8:
			entries = append(entries, fmt.Sprintf(`"op": "u", "ns": "DB.%s", "o": {"_id": %d, "a": %d, "r": true}, "o2": {"_id": %d}`, coll, id, i, id))
			m[id] = &doc{a: i, replace: true}
		default:
			entries = append(entries, fmt.Sprintf(`"op": "d", "ns": "DB.%s", "o": {"_id": %d}`, coll, id))
			delete(m, id)
		}
	}
	x.must(entries...)
	for _, coll := range []string{"c1", "c2"} {
		var ids []int
		for id := range want[coll] {
			ids = append(ids, id)
		}
		sort.Ints(ids)
		var out []string
		for _, id := range ids {
			d := want[coll][id]
			s := fmt.Sprintf(`{"_id":%d,"a":%d}`, id, d.a)
			if d.replace {
				s = fmt.Sprintf(`{"_id":%d,"a":%d,"r":true}`, id, d.a)
			}
			out = append(out, s)
		}
		expectJSON(t, coll, x.docs(coll), strings.Join(out, " "))
	}
	if got := x.a.applied.Load(); got != n {
		t.Errorf("applied %d entries, want %d", got, n)
	}
	// Batched: far fewer flushes than entries (one per entry before).
	if f := x.a.flushes.Load(); f == 0 || f > n/4 {
		t.Errorf("%d entries written in %d batches", n, f)
	}
	if err := x.a.close(); err != nil {
		t.Fatal(err)
	}
}
