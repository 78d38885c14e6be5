package mongodb

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// ej parses Extended JSON (the form MongoDB's documentation and tools
// print oplog entries in) into a document.
func ej(t *testing.T, s string) bson.D {
	t.Helper()
	var d bson.D
	if err := bson.UnmarshalExtJSON([]byte(s), false, &d); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return d
}

func rawOf(t *testing.T, d bson.D) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := bson.MarshalExtJSON(v, false, false)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Update entries' o as MongoDB 6/7 writes them: doc_diff ($v: 2), the
// classic modifier form ($v: 1 oplogs of 4.x, still read by 6/7) and
// replacements (replaceOne).
func TestApplyUpdateForms(t *testing.T) {
	const base = `{"_id": 1, "a": 1, "b": {"c": 1, "d": 2}, "arr": [1, 2, 3, {"x": 1}], "gone": true}`
	for _, tc := range []struct{ name, o, want string }{
		{"$v:2 update, insert, delete fields", `{"$v": 2, "diff": {"d": {"gone": false}, "u": {"a": 5}, "i": {"new": "n"}}}`,
			`{"_id": 1, "a": 5, "b": {"c": 1, "d": 2}, "arr": [1, 2, 3, {"x": 1}], "new": "n"}`},
		{"$v:2 insert of an existing field moves it last", `{"$v": 2, "diff": {"i": {"a": 9}}}`,
			`{"_id": 1, "b": {"c": 1, "d": 2}, "arr": [1, 2, 3, {"x": 1}], "gone": true, "a": 9}`},
		{"$v:2 sub-document diff", `{"$v": 2, "diff": {"sb": {"u": {"c": 7}, "d": {"d": false}, "i": {"e": 1}}}}`,
			`{"_id": 1, "a": 1, "b": {"c": 7, "e": 1}, "arr": [1, 2, 3, {"x": 1}], "gone": true}`},
		{"$v:2 array diff: set and sub-diff elements", `{"$v": 2, "diff": {"sarr": {"a": true, "u1": 20, "s3": {"u": {"x": 2}}}}}`,
			`{"_id": 1, "a": 1, "b": {"c": 1, "d": 2}, "arr": [1, 20, 3, {"x": 2}], "gone": true}`},
		{"$v:2 array diff: truncate ($pop, $pull)", `{"$v": 2, "diff": {"sarr": {"a": true, "l": 2}}}`,
			`{"_id": 1, "a": 1, "b": {"c": 1, "d": 2}, "arr": [1, 2], "gone": true}`},
		{"$v:2 array diff: grow ($push)", `{"$v": 2, "diff": {"sarr": {"a": true, "l": 6, "u4": "p", "u5": "q"}}}`,
			`{"_id": 1, "a": 1, "b": {"c": 1, "d": 2}, "arr": [1, 2, 3, {"x": 1}, "p", "q"], "gone": true}`},
		{"$v:2 $unset", `{"$v": 2, "diff": {"d": {"a": false, "gone": false}}}`,
			`{"_id": 1, "b": {"c": 1, "d": 2}, "arr": [1, 2, 3, {"x": 1}]}`},
		{"$v:2 diff creating a sub-document", `{"$v": 2, "diff": {"snew": {"i": {"k": 1}}}}`,
			`{"_id": 1, "a": 1, "b": {"c": 1, "d": 2}, "arr": [1, 2, 3, {"x": 1}], "gone": true, "new": {"k": 1}}`},
		{"$v:1 $set and $unset with dotted paths", `{"$v": 1, "$set": {"b.c": 9, "arr.0": 0, "x.y.z": 1}, "$unset": {"gone": true, "arr.3": true}}`,
			`{"_id": 1, "a": 1, "b": {"c": 9, "d": 2}, "arr": [0, 2, 3, null], "x": {"y": {"z": 1}}}`},
		{"classic $set without $v", `{"$set": {"a": "s"}}`,
			`{"_id": 1, "a": "s", "b": {"c": 1, "d": 2}, "arr": [1, 2, 3, {"x": 1}], "gone": true}`},
		{"replacement (replaceOne)", `{"_id": 1, "only": 1}`, `{"_id": 1, "only": 1}`},
		{"replacement without _id keeps it", `{"only": 2}`, `{"_id": 1, "only": 2}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := ej(t, base)
			got, err := ApplyUpdate(doc, rawOf(t, ej(t, tc.o)))
			if err != nil {
				t.Fatal(err)
			}
			if g, w := jsonOf(t, got), jsonOf(t, ej(t, tc.want)); g != w {
				t.Fatalf("got  %s\nwant %s", g, w)
			}
			if jsonOf(t, doc) != jsonOf(t, ej(t, base)) {
				t.Fatalf("input modified: %s", jsonOf(t, doc))
			}
		})
	}
}

func TestApplyUpdateRefusesUnknownForms(t *testing.T) {
	for _, o := range []string{
		`{"$inc": {"a": 1}}`, // never logged: MongoDB logs its result
		`{"$v": 2}`,
		`{"$v": 2, "diff": {"x": {}}}`,
		`{"$v": 2, "diff": {"sa": {"a": true, "q1": 1}}}`,
		`{"$v": 2, "diff": {"sa": {"a": true, "l": -1}}}`,
	} {
		if _, err := ApplyUpdate(ej(t, `{"_id": 1, "a": []}`), rawOf(t, ej(t, o))); err == nil {
			t.Errorf("%s: no error", o)
		}
	}
}

// FuzzApplyUpdate feeds update entries' o (bytes from the archive) to the
// appliers of every form: they may refuse, never panic.
func FuzzApplyUpdate(f *testing.F) {
	for _, s := range []string{`{"$v": 2, "diff": {"sarr": {"a": true, "l": 2, "u1": 20, "s0": {"u": {"x": 1}}}}}`,
		`{"$set": {"a.0.b": 1}, "$unset": {"c.1": true}}`, `{"x": 1}`, `{"$v": 2, "diff": {"sb": {"sc": {"a": true, "l": 1}}}}`} {
		var d bson.D
		bson.UnmarshalExtJSON([]byte(s), false, &d)
		b, _ := bson.Marshal(d)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if bson.Raw(data).Validate() != nil {
			return
		}
		doc := bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: bson.A{bson.D{{Key: "b", Value: 1}}}}, {Key: "c", Value: bson.A{1, 2}}}
		if _, err := ApplyUpdate(doc, data); err == nil {
			if _, err := bson.Marshal(doc); err != nil {
				t.Fatal(err)
			}
		}
	})
}
