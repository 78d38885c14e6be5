package oplog

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// FerretDB's differences from MongoDB's oplog, for capture. (Replay's are
// in restore/mongodb/batch.go.) FerretDB v1 writes the oplog entry after
// the data write, outside its transaction, so under concurrent writers an
// entry can become visible after one with a later ts, and its tailable
// cursors die whenever a batch comes back short. The tailer therefore
// re-reads a window before its last timestamp each time it re-issues the
// find and drops what it has seen by the entry's _id. It also re-issues the
// find when a cursor stays idle, as a cursor can stall while entries arrive.

// ferretIdleAwaits is how many empty await rounds a FerretDB cursor gets
// before the tailer re-issues the find: its tailable cursors have been seen
// to stop returning entries that keep arriving.
const ferretIdleAwaits = 3

// ferretOverlap is how far back a re-read reaches, in seconds of ts.
const ferretOverlap = 2

// ferretOverlapStart is where a re-read from last begins.
func ferretOverlapStart(last TS) TS {
	if last.T <= ferretOverlap {
		return TS{}
	}
	return TS{T: last.T - ferretOverlap}
}

// Every query, and every 10 ms of an await round, costs FerretDB a scan
// of its whole oplog, which has no index (its SQLite backend decodes every
// entry: 2.2-2.7 s of CPU per query at 20,000 entries, measured); and its
// tailable cursors close whenever a batch comes back short, so an idle
// tailer re-issues its find again and again. An idle FerretDB with 20,000
// oplog entries spent 92% of a core on a streamer (bench/README.md). So on
// FerretDB the await rounds are short, the resume check waits for a new
// entry, a quiet oplog is re-read less and less often, and once it has
// been quiet for ferretQuietAfter the tailer only watches its collStats
// count (40-60 ms of CPU) every ferretProbeEvery, reading the oplog when
// the count moves or at least every ferretMaxQuiet (a full capped oplog
// can keep its count while entries turn over). The price is latency: the
// first write after a quiet spell is read up to ferretProbeEvery late.
const (
	ferretAwait        = 20 * time.Millisecond
	ferretMaxIdleSleep = time.Second
	ferretQuietAfter   = 5 * time.Second
	ferretProbeEvery   = 2 * time.Second
	ferretMaxQuiet     = time.Minute
)

// ferretWait waits, flushing as due, until the oplog's entry count moves
// or ferretMaxQuiet has passed.
func (t *tailer) ferretWait(ctx context.Context, c *mongo.Client) error {
	count := func() (int64, error) {
		r, err := c.Database("local").RunCommand(ctx, bson.D{{Key: "collStats", Value: "oplog.rs"}}).Raw()
		if err != nil {
			return 0, fmt.Errorf("read the oplog's statistics: %w", err)
		}
		n, _ := r.Lookup("count").AsInt64OK()
		return n, nil
	}
	before, err := count()
	if err != nil {
		return err
	}
	for end := time.Now().Add(ferretMaxQuiet); time.Now().Before(end); {
		if err := t.idle(ctx, ferretProbeEvery); err != nil {
			return err
		}
		if n, err := count(); err != nil || n != before {
			return err
		}
	}
	return nil
}

// ferretIdleSleep is the wait before the next await round after the
// oplog has been quiet for idleFor.
func ferretIdleSleep(idleFor time.Duration) time.Duration {
	return min(max(idleFor/4, 20*time.Millisecond), ferretMaxIdleSleep)
}

// ferretCursor adjusts the tailing cursor for FerretDB. It stays
// tailable with await: FerretDB then re-runs the query every 10 ms, which
// costs it CPU on a large oplog, but a cursor without await was seen to
// miss late entries more often between the tailer's own re-reads.
func ferretCursor(o *options.FindOptionsBuilder) *options.FindOptionsBuilder {
	return o
}
