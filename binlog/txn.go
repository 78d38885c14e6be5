package binlog

import (
	"fmt"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
)

// Unit is what the archive and replay handle atomically: one transaction
// (a GTID group, or BEGIN … COMMIT on servers without GTIDs), a statement
// logged on its own (DDL), or a single event outside any transaction
// (rotate, stop, GTID list, checkpoint).
type Unit struct {
	Events []Event
	Txn    bool      // a transaction or statement, as opposed to a lone bookkeeping event
	GTID   string    // its GTID, "" without one
	Maria  MariaGTID // decoded MariaDB GTID (Seq 0 when none)
	Time   time.Time // header time of the event that ends it: its commit
}

// Bytes returns the unit's events concatenated.
func (u *Unit) Bytes() []byte {
	n := 0
	for _, e := range u.Events {
		n += len(e.Raw)
	}
	b := make([]byte, 0, n)
	for _, e := range u.Events {
		b = append(b, e.Raw...)
	}
	return b
}

// grouper assembles events into units. Transaction boundaries are decided
// from the events alone, the way a replica's applier does.
type grouper struct {
	cur     *Unit
	begun   bool // BEGIN seen: the unit ends at XID, COMMIT or ROLLBACK
	queries int
}

// add consumes one non-artificial event and returns a unit when it
// completes one.
func (g *grouper) add(f *Format, e Event) (*Unit, error) {
	body, err := f.Body(e)
	if err != nil {
		return nil, err
	}
	switch e.Type {
	case replication.MARIADB_GTID_EVENT, replication.GTID_EVENT, replication.ANONYMOUS_GTID_EVENT, replication.GTID_TAGGED_LOG_EVENT:
		if g.cur != nil {
			return nil, fmt.Errorf("%w: GTID event at %d inside an unfinished transaction", ErrCorrupt, e.Start())
		}
		gtid, maria, _, err := gtidOf(e, body)
		if err != nil {
			return nil, err
		}
		g.cur = &Unit{Events: []Event{e}, Txn: true, GTID: gtid, Maria: maria}
		g.begun, g.queries = false, 0
		return nil, nil
	case replication.FORMAT_DESCRIPTION_EVENT, replication.ROTATE_EVENT, replication.STOP_EVENT:
		if g.cur != nil {
			return nil, fmt.Errorf("%w: %s event at %d inside an unfinished transaction", ErrCorrupt, e.Type, e.Start())
		}
		return &Unit{Events: []Event{e}, Time: e.Time()}, nil
	}
	if g.cur == nil {
		if e.Type == replication.QUERY_EVENT {
			q, err := ParseQuery(body)
			if err != nil {
				return nil, err
			}
			if isBegin(q.SQL) {
				g.cur, g.begun, g.queries = &Unit{Events: []Event{e}, Txn: true}, true, 1
				return nil, nil
			}
			return &Unit{Events: []Event{e}, Txn: true, Time: e.Time()}, nil
		}
		if isTxnBody(e.Type) {
			// Statement-based INTVAR/RAND/USER_VAR before a query without a
			// GTID: keep them with the query that follows.
			g.cur = &Unit{Events: []Event{e}, Txn: true}
			return nil, nil
		}
		return &Unit{Events: []Event{e}, Time: e.Time()}, nil
	}
	u := g.cur
	u.Events = append(u.Events, e)
	done := false
	switch e.Type {
	case replication.XID_EVENT, replication.XA_PREPARE_LOG_EVENT, replication.TRANSACTION_PAYLOAD_EVENT:
		done = true
	case replication.QUERY_EVENT, replication.MARIADB_QUERY_COMPRESSED_EVENT:
		q, err := ParseQuery(body)
		if err != nil {
			return nil, err
		}
		g.queries++
		switch {
		case g.queries == 1 && isBegin(q.SQL):
			g.begun = true
		case !g.begun:
			done = true // a statement logged on its own (DDL)
		case isEnd(q.SQL):
			done = true
		}
	}
	if !done {
		return nil, nil
	}
	u.Time = e.Time()
	g.cur = nil
	return u, nil
}

// pending reports whether a transaction is half assembled.
func (g *grouper) pending() bool { return g.cur != nil }

func (g *grouper) reset() { g.cur = nil }

func isTxnBody(t replication.EventType) bool {
	return t == replication.INTVAR_EVENT || t == replication.RAND_EVENT || t == replication.USER_VAR_EVENT
}

func isBegin(sql string) bool {
	s := strings.ToUpper(strings.TrimSpace(sql))
	return s == "BEGIN" || s == "START TRANSACTION" || strings.HasPrefix(s, "XA START") || strings.HasPrefix(s, "XA BEGIN")
}

func isEnd(sql string) bool {
	s := strings.ToUpper(strings.TrimSpace(sql))
	return s == "COMMIT" || s == "ROLLBACK"
}
