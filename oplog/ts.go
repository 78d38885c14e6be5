package oplog

import (
	"fmt"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TS is an oplog timestamp: seconds since the epoch and an ordinal within
// the second. Its text form "T:I" is what the repository records as stream
// positions and what --to-ts takes.
type TS struct {
	T, I uint32
}

// FromBSON converts the driver's timestamp.
func FromBSON(t bson.Timestamp) TS { return TS{T: t.T, I: t.I} }

// BSON converts to the driver's timestamp, for queries.
func (t TS) BSON() bson.Timestamp { return bson.Timestamp{T: t.T, I: t.I} }

func (t TS) String() string { return fmt.Sprintf("%d:%d", t.T, t.I) }

// IsZero reports the zero timestamp, which no oplog entry carries.
func (t TS) IsZero() bool { return t.T == 0 && t.I == 0 }

// Compare returns -1, 0 or +1 as t is before, equal to or after u.
func (t TS) Compare(u TS) int {
	switch {
	case t.T < u.T || (t.T == u.T && t.I < u.I):
		return -1
	case t == u:
		return 0
	default:
		return 1
	}
}

// Less reports t < u.
func (t TS) Less(u TS) bool { return t.Compare(u) < 0 }

// ParseTS parses "T:I" (both decimal uint32). Anything else is refused
// with the form expected: a mistyped restore target must never be read
// as some other point in time.
func ParseTS(s string) (TS, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), ":")
	if ok {
		t, err1 := strconv.ParseUint(a, 10, 32)
		i, err2 := strconv.ParseUint(b, 10, 32)
		if err1 == nil && err2 == nil && a[0] != '+' && b[0] != '+' {
			return TS{T: uint32(t), I: uint32(i)}, nil
		}
	}
	return TS{}, fmt.Errorf("oplog timestamp %q: want T:I, seconds and ordinal in decimal (e.g. 1764509000:3)", s)
}
