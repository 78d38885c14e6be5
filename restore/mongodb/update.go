package mongodb

import (
	"fmt"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// MongoDB's update entries come in three forms, all applied here to the
// document as it stands, so replay needs no server-side oplog application:
//
//	{$v: 2, diff: {...}}              5.0+ delta (doc_diff): i/u/d/s<field>, arrays a:true l u<n> s<n>
//	{$set: {...}, $unset: {...}}      the classic modifier form ($v: 1 or none)
//	{<field>: ..., ...}               a whole replacement (replaceOne)
//
// FerretDB's entries look like the modifier form but mean replacement;
// see ferretdb.go.

// updateKind classifies an update entry's o.
func updateKind(o bson.Raw) (string, error) {
	elems, err := o.Elements()
	if err != nil {
		return "", fmt.Errorf("update: %w", err)
	}
	if v, ok := o.Lookup("$v").AsInt64OK(); ok && v == 2 {
		if _, ok := o.Lookup("diff").DocumentOK(); !ok {
			return "", fmt.Errorf("update: $v: 2 without a diff document")
		}
		return "diff", nil
	}
	for _, e := range elems {
		if strings.HasPrefix(e.Key(), "$") {
			return "modifier", nil
		}
	}
	return "replacement", nil
}

// ApplyUpdate returns doc with the update entry's o applied (doc is not
// modified). The _id is never changed.
func ApplyUpdate(doc bson.D, o bson.Raw) (bson.D, error) {
	kind, err := updateKind(o)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "diff":
		var diff bson.D
		if err := bson.Unmarshal(o.Lookup("diff").Document(), &diff); err != nil {
			return nil, fmt.Errorf("update diff: %w", err)
		}
		return applyDiff(cloneD(doc), diff)
	case "modifier":
		var mod bson.D
		if err := bson.Unmarshal(o, &mod); err != nil {
			return nil, fmt.Errorf("update: %w", err)
		}
		return applyModifiers(cloneD(doc), mod)
	default:
		var repl bson.D
		if err := bson.Unmarshal(o, &repl); err != nil {
			return nil, fmt.Errorf("replacement: %w", err)
		}
		return withID(repl, doc), nil
	}
}

// withID puts old's _id first in repl, as the server keeps it.
func withID(repl, old bson.D) bson.D {
	id, ok := get(old, "_id")
	if !ok {
		return repl
	}
	out := bson.D{{Key: "_id", Value: id}}
	for _, e := range repl {
		if e.Key != "_id" {
			out = append(out, e)
		}
	}
	return out
}

// applyDiff applies a document diff: deletes, then in-place updates, then
// inserts (appended, moved to the end if present), then sub-diffs —
// MongoDB's own order, which the diff's author relied on.
func applyDiff(doc bson.D, diff bson.D) (bson.D, error) {
	for _, sec := range diff {
		switch sec.Key {
		case "d":
			for _, f := range asD(sec.Value) {
				doc = del(doc, f.Key)
			}
		}
	}
	for _, sec := range diff {
		if sec.Key == "u" {
			for _, f := range asD(sec.Value) {
				doc = set(doc, f.Key, f.Value)
			}
		}
	}
	for _, sec := range diff {
		if sec.Key == "i" {
			for _, f := range asD(sec.Value) {
				doc = append(del(doc, f.Key), bson.E{Key: f.Key, Value: f.Value})
			}
		}
	}
	for _, sec := range diff {
		switch {
		case sec.Key == "d" || sec.Key == "u" || sec.Key == "i":
		case strings.HasPrefix(sec.Key, "s") && len(sec.Key) > 1:
			field := sec.Key[1:]
			sub, ok := sec.Value.(bson.D)
			if !ok {
				return nil, fmt.Errorf("diff: %s is not a document", sec.Key)
			}
			cur, _ := get(doc, field)
			nv, err := applySubDiff(cur, sub)
			if err != nil {
				return nil, fmt.Errorf("diff of %s: %w", field, err)
			}
			doc = set(doc, field, nv)
		default:
			return nil, fmt.Errorf("diff: unknown section %q", sec.Key)
		}
	}
	return doc, nil
}

// applySubDiff applies a nested diff to a value: an array diff (a: true)
// or a document diff.
func applySubDiff(cur any, sub bson.D) (any, error) {
	if a, ok := get(sub, "a"); ok && a == true {
		arr, _ := cur.(bson.A)
		return applyArrayDiff(append(bson.A(nil), arr...), sub)
	}
	d, _ := cur.(bson.D)
	return applyDiff(cloneD(d), sub)
}

// applyArrayDiff: l resizes (truncating, or padding with null), u<n> sets
// element n, s<n> applies a nested diff to element n.
func applyArrayDiff(arr bson.A, diff bson.D) (bson.A, error) {
	if l, ok := get(diff, "l"); ok {
		n, ok := toInt(l)
		if !ok || n < 0 || n > maxArrayIndex {
			return nil, fmt.Errorf("array diff: bad length %v", l)
		}
		arr = resize(arr, n)
	}
	for _, e := range diff {
		if e.Key == "a" || e.Key == "l" {
			continue
		}
		if len(e.Key) < 2 || (e.Key[0] != 'u' && e.Key[0] != 's') {
			return nil, fmt.Errorf("array diff: unknown key %q", e.Key)
		}
		idx, err := strconv.Atoi(e.Key[1:])
		if err != nil || idx < 0 || idx > maxArrayIndex {
			return nil, fmt.Errorf("array diff: bad index in %q", e.Key)
		}
		if idx >= len(arr) {
			arr = resize(arr, idx+1)
		}
		if e.Key[0] == 'u' {
			arr[idx] = e.Value
			continue
		}
		sub, ok := e.Value.(bson.D)
		if !ok {
			return nil, fmt.Errorf("array diff: %s is not a document", e.Key)
		}
		nv, err := applySubDiff(arr[idx], sub)
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", idx, err)
		}
		arr[idx] = nv
	}
	return arr, nil
}

// maxArrayIndex bounds array positions: a 16 MiB document cannot hold
// more elements, so a larger one is a damaged entry (and must not make
// replay allocate without bound).
const maxArrayIndex = 16 << 20

func resize(arr bson.A, n int) bson.A {
	if n <= len(arr) {
		return arr[:n]
	}
	for len(arr) < n {
		arr = append(arr, nil)
	}
	return arr
}

// applyModifiers applies the classic form. MongoDB logs only $set and
// $unset (every other operator is logged as its result), so anything else
// is refused rather than guessed at.
func applyModifiers(doc bson.D, mod bson.D) (bson.D, error) {
	for _, m := range mod {
		switch m.Key {
		case "$v":
		case "$set":
			for _, f := range asD(m.Value) {
				var err error
				if doc, err = setPath(doc, strings.Split(f.Key, "."), f.Value); err != nil {
					return nil, fmt.Errorf("$set %s: %w", f.Key, err)
				}
			}
		case "$unset":
			for _, f := range asD(m.Value) {
				doc = unsetPath(doc, strings.Split(f.Key, "."))
			}
		default:
			return nil, fmt.Errorf("update operator %s does not appear in oplog entries", m.Key)
		}
	}
	return doc, nil
}

// setPath sets a dotted path, creating documents on the way; numeric
// components index arrays (padding with null, as the server does).
func setPath(doc bson.D, path []string, v any) (bson.D, error) {
	if len(path) == 1 {
		return set(doc, path[0], v), nil
	}
	cur, _ := get(doc, path[0])
	nv, err := setIn(cur, path[1:], v)
	if err != nil {
		return nil, err
	}
	return set(doc, path[0], nv), nil
}

func setIn(cur any, path []string, v any) (any, error) {
	switch c := cur.(type) {
	case bson.A:
		idx, err := strconv.Atoi(path[0])
		if err != nil || idx < 0 || idx > maxArrayIndex {
			return nil, fmt.Errorf("cannot use %q to index an array", path[0])
		}
		arr := append(bson.A(nil), c...)
		if idx >= len(arr) {
			arr = resize(arr, idx+1)
		}
		if len(path) == 1 {
			arr[idx] = v
			return arr, nil
		}
		nv, err := setIn(arr[idx], path[1:], v)
		if err != nil {
			return nil, err
		}
		arr[idx] = nv
		return arr, nil
	case bson.D:
		return setPath(cloneD(c), path, v)
	case nil:
		return setPath(bson.D{}, path, v)
	default:
		return nil, fmt.Errorf("cannot create field %q in a %T", path[0], cur)
	}
}

// unsetPath removes a dotted path; an array element becomes null.
func unsetPath(doc bson.D, path []string) bson.D {
	if len(path) == 1 {
		return del(doc, path[0])
	}
	cur, ok := get(doc, path[0])
	if !ok {
		return doc
	}
	return set(doc, path[0], unsetIn(cur, path[1:]))
}

func unsetIn(cur any, path []string) any {
	switch c := cur.(type) {
	case bson.D:
		return unsetPath(cloneD(c), path)
	case bson.A:
		idx, err := strconv.Atoi(path[0])
		if err != nil || idx < 0 || idx >= len(c) {
			return c
		}
		arr := append(bson.A(nil), c...)
		if len(path) == 1 {
			arr[idx] = nil
		} else {
			arr[idx] = unsetIn(arr[idx], path[1:])
		}
		return arr
	default:
		return cur
	}
}

func get(d bson.D, k string) (any, bool) {
	for _, e := range d {
		if e.Key == k {
			return e.Value, true
		}
	}
	return nil, false
}

// set replaces k in place, or appends it.
func set(d bson.D, k string, v any) bson.D {
	for i, e := range d {
		if e.Key == k {
			d[i].Value = v
			return d
		}
	}
	return append(d, bson.E{Key: k, Value: v})
}

func del(d bson.D, k string) bson.D {
	for i, e := range d {
		if e.Key == k {
			return append(d[:i:i], d[i+1:]...)
		}
	}
	return d
}

func cloneD(d bson.D) bson.D { return append(bson.D(nil), d...) }

func asD(v any) bson.D {
	d, _ := v.(bson.D)
	return d
}

func toInt(v any) (int, bool) {
	switch n := v.(type) {
	case int32:
		return int(n), true
	case int64:
		return int(n), true
	case float64:
		return int(n), n == float64(int(n))
	}
	return 0, false
}
