package binlog

import (
	"fmt"
	"strings"
	"time"
)

// Target is where a replay stops, always at a transaction boundary and
// always a prefix of the archive: the first transaction past the target
// ends it, nothing after is applied. Exactly one field is set.
type Target struct {
	// Time: every transaction whose commit event's time is at or before
	// Time, at the binlog's 1-second resolution (Time is truncated to the
	// second, so 14:03:00.7 includes commits logged at 14:03:00).
	Time time.Time
	// GTID: through this transaction (MariaDB domain-server-seq or MySQL
	// uuid:number), inclusive.
	GTID string
	// Position: every transaction that ends at or before File:Pos.
	Position Position
	// Latest: everything archived.
	Latest bool
}

func (t Target) String() string {
	switch {
	case t.Latest:
		return "latest"
	case t.GTID != "":
		return "GTID " + t.GTID
	case !t.Position.IsZero():
		return fmt.Sprintf("position %s:%d", t.Position.File, t.Position.Pos)
	default:
		return "time " + t.Time.UTC().Format(time.RFC3339Nano)
	}
}

func (t Target) validate() error {
	n := 0
	if t.Latest {
		n++
	}
	if t.GTID != "" {
		n++
		if _, err := parseTargetGTID(t.GTID); err != nil {
			return err
		}
	}
	if !t.Position.IsZero() {
		n++
	}
	if !t.Time.IsZero() {
		n++
	}
	if n != 1 {
		return fmt.Errorf("%w: a replay target needs exactly one of time, GTID, position or latest", ErrBadPosition)
	}
	return nil
}

// targetGTID is a parsed GTID target.
type targetGTID struct {
	maria  *MariaGTID
	mysqlG string // uuid:n, lower case
}

func parseTargetGTID(s string) (targetGTID, error) {
	if g, err := ParseMariaGTID(s); err == nil {
		return targetGTID{maria: &g}, nil
	}
	u, n, ok := strings.Cut(s, ":")
	if !ok || len(u) != 36 || n == "" || strings.ContainsAny(n, ":,-") {
		return targetGTID{}, fmt.Errorf("%w: GTID %q: want domain-server-seq (MariaDB) or uuid:number (MySQL)", ErrBadPosition, s)
	}
	return targetGTID{mysqlG: strings.ToLower(s)}, nil
}

// reached reports, for a transaction about to be applied, whether it lies
// past the target (stop before it), and whether it is the target's last
// transaction (stop after it).
func (t Target) past(u *Unit, end Position, tg targetGTID) (past, last bool) {
	switch {
	case t.Latest:
		return false, false
	case !t.Time.IsZero():
		return u.Time.Unix() > t.Time.Unix(), false
	case !t.Position.IsZero():
		return t.Position.before(end), end == Position{File: t.Position.File, Pos: t.Position.Pos, GTID: end.GTID}
	case tg.maria != nil:
		if u.Maria.Seq != 0 && u.Maria.Domain == tg.maria.Domain {
			if u.Maria.Seq > tg.maria.Seq {
				return true, false
			}
			return false, u.Maria.Seq == tg.maria.Seq
		}
		return false, false
	default:
		return false, strings.EqualFold(u.GTID, tg.mysqlG)
	}
}
