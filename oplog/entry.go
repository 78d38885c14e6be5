package oplog

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Entry is one oplog entry as the server wrote it (Raw, kept byte for byte:
// the archive is faithful) with the fields tailing and replay need.
type Entry struct {
	Raw  bson.Raw
	TS   TS
	Op   string // i, u, d, c, n
	NS   string
	Wall time.Time // zero when the server wrote none
	O    bson.Raw
	O2   bson.Raw // nil when absent
	// Key identifies the entry for de-duplication: FerretDB's own _id when
	// present, else the timestamp, which MongoDB never gives two entries.
	Key string
}

// ErrBadEntry marks bytes that are not an oplog entry.
var ErrBadEntry = errors.New("malformed oplog entry")

// ParseEntry validates raw and extracts an entry's fields. raw is retained.
func ParseEntry(raw bson.Raw) (Entry, error) {
	if err := raw.Validate(); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrBadEntry, err)
	}
	e := Entry{Raw: raw}
	v, err := raw.LookupErr("ts")
	if err != nil {
		return Entry{}, fmt.Errorf("%w: no ts", ErrBadEntry)
	}
	t, i, ok := v.TimestampOK()
	if !ok {
		return Entry{}, fmt.Errorf("%w: ts is %s, not a timestamp", ErrBadEntry, v.Type)
	}
	e.TS = TS{T: t, I: i}
	if e.Op, ok = raw.Lookup("op").StringValueOK(); !ok {
		return Entry{}, fmt.Errorf("%w at %s: no op", ErrBadEntry, e.TS)
	}
	switch e.Op {
	case "i", "u", "d", "c", "n":
	default:
		return Entry{}, fmt.Errorf("%w at %s: unknown op %q", ErrBadEntry, e.TS, e.Op)
	}
	e.NS, _ = raw.Lookup("ns").StringValueOK()
	if w, ok := raw.Lookup("wall").DateTimeOK(); ok {
		e.Wall = time.UnixMilli(w).UTC()
	}
	if d, ok := raw.Lookup("o").DocumentOK(); ok {
		e.O = d
	} else if e.Op != "n" {
		return Entry{}, fmt.Errorf("%w at %s: op %s without an o document", ErrBadEntry, e.TS, e.Op)
	}
	if d, ok := raw.Lookup("o2").DocumentOK(); ok {
		e.O2 = d
	}
	e.Key = e.TS.String()
	if id, err := raw.LookupErr("_id"); err == nil {
		e.Key = "id:" + id.String()
	}
	return e, nil
}

// DB returns the database part of the entry's namespace.
func (e Entry) DB() string {
	db, _, _ := strings.Cut(e.NS, ".")
	return db
}

// Internal reports namespaces a restore never replays: the admin, config
// and local databases (sessions, transactions table, images, the oplog
// itself) and system collections (system.views and the like are rebuilt by
// the commands that create them; time-series buckets are a known gap).
func Internal(ns string) bool {
	db, coll, _ := strings.Cut(ns, ".")
	switch db {
	case "admin", "config", "local":
		return true
	}
	return strings.HasPrefix(coll, "system.")
}
