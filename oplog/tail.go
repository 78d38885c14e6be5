package oplog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/supervise"
)

// tailer is the state that survives reconnections: the stream writer (with
// data not yet durable), the newest timestamp handed to it and the keys of
// recent entries, so re-reads after a reconnect or a dead cursor append
// nothing twice.
type tailer struct {
	cfg     Config
	src     Source
	w       *archive.StreamWriter
	last    TS // newest entry appended (or the stream's start)
	real    bool
	trusted bool // last is an artificial start this process saw the oplog empty at
	seen    map[string]TS
	flushed time.Time
	drained time.Time // what the cursor had all of when it last came back empty; zero after a new entry
	quiet   time.Time // since when reads have found nothing new (also dead cursors); zero after a new entry
}

const cappedPositionLost = 136

func (t *tailer) session(ctx context.Context) (progressed bool, err error) {
	c, err := t.cfg.Connect(ctx, t.cfg.Source)
	if err != nil {
		return false, err
	}
	defer c.Disconnect(context.WithoutCancel(ctx))
	src, err := Identify(ctx, c)
	if err != nil {
		return false, err
	}
	if t.w != nil && src.ClusterID != t.src.ClusterID {
		return false, fmt.Errorf("%w: reconnected to %s, streaming %s", archive.ErrSourceMismatch, src.ClusterID, t.src.ClusterID)
	}
	t.src = src
	if err := CheckOplog(ctx, c, src); err != nil {
		return false, err
	}
	if _, err := t.cfg.Repo.BindSource(ctx, src.Archive()); err != nil {
		return false, err
	}
	oplog := c.Database("local").Collection("oplog.rs")
	if t.w == nil {
		if err := t.open(ctx, c, oplog); err != nil {
			return false, err
		}
	}
	supervise.Connected(ctx)
	for {
		p, err := t.follow(ctx, c, oplog)
		progressed = progressed || p
		if err != nil {
			return progressed, err
		}
		// The cursor died quietly (FerretDB closes tailable cursors whose
		// first batch was short): re-issue the find from the last timestamp.
		if err := t.flushDue(ctx); err != nil {
			return progressed, err
		}
		if t.src.Flavour == FlavourFerretDB && !t.quiet.IsZero() && time.Since(t.quiet) >= ferretQuietAfter {
			// Each find scans FerretDB's whole oplog: a quiet one is
			// watched through its cheap statistics instead.
			if err := t.ferretWait(ctx, c); err != nil {
				return progressed, err
			}
			continue
		}
		delay := requeryDelay
		if t.src.Flavour == FlavourFerretDB && !t.quiet.IsZero() {
			delay = max(delay, ferretIdleSleep(time.Since(t.quiet)))
		}
		if err := t.idle(ctx, delay); err != nil {
			return progressed, err
		}
	}
}

// idle waits d, flushing (and so reporting progress) as often as due.
func (t *tailer) idle(ctx context.Context, d time.Duration) error {
	for end := time.Now().Add(d); ; {
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		if err := sleep(ctx, min(left, t.cfg.FlushInterval)); err != nil {
			return err
		}
		if err := t.flushDue(ctx); err != nil {
			return err
		}
	}
}

const requeryDelay = 100 * time.Millisecond

// open starts the writer where the archive ends, or for a new stream at
// StartAt or the newest oplog entry.
func (t *tailer) open(ctx context.Context, c *mongo.Client, oplog *mongo.Collection) error {
	w, err := t.cfg.Repo.OpenStream(ctx, t.src.StreamName(), archive.StreamWriterOptions{})
	if err != nil {
		return err
	}
	if d, ok := w.Durable(); ok {
		if t.last, err = ParseTS(d.End); err != nil {
			return fmt.Errorf("stream %s ends at %q: %w", d.Stream, d.End, archive.ErrCorrupt)
		}
		t.real = true
		t.w = w
		t.cfg.Log.Info("resuming oplog stream", "stream", d.Stream, "from", t.last, "flavour", t.src.Flavour)
		return nil
	}
	start := t.cfg.StartAt
	t.trusted = t.cfg.StartSeen
	if start.IsZero() {
		// An empty stream continues from the newest base backup's start,
		// so a base taken before any streamer ran can still be restored
		// past its end (the check below proves the oplog reaches back).
		if start, err = newestBaseStart(ctx, t.cfg.Repo); err != nil {
			return err
		}
	}
	if start.IsZero() {
		newest, ok, err := edge(ctx, oplog, -1)
		if err != nil {
			return err
		}
		if ok {
			start = newest
			// Never start past the majority commit point: entries between
			// it and the newest could roll back, and would otherwise be
			// taken as already behind the stream.
			if read := t.majorityReader(c); read != nil {
				if m, has, err := read(ctx); err != nil {
					return err
				} else if has && m.Less(start) {
					start = m
				}
			}
		} else {
			// An empty oplog (a fresh FerretDB): nothing before now can be
			// missed, and this process watches from here.
			start, t.trusted = TS{T: uint32(time.Now().Unix())}, true
		}
	}
	t.last = start
	w.Restart(start.String())
	t.w = w
	t.cfg.Log.Info("starting oplog stream", "stream", t.src.StreamName(), "at", start, "flavour", t.src.Flavour)
	return nil
}

// newestBaseStart is the start of the newest MongoDB base backup (zero
// when there is none).
func newestBaseStart(ctx context.Context, repo *archive.Repository) (TS, error) {
	backups, err := repo.Backups(ctx)
	if errors.Is(err, archive.ErrNoIdentity) {
		return TS{}, fmt.Errorf("a new oplog stream starts at the newest base backup's start, and that backup predates the catalog, so only its encrypted manifest says where it starts; a streamer holds no key: run `tidemark verify --repair` once with the key (it writes the catalog entry), or take a new base backup: %w", err)
	}
	if err != nil {
		return TS{}, err
	}
	for i := len(backups) - 1; i >= 0; i-- {
		if backups[i].Engine == Engine {
			ts, err := ParseTS(backups[i].Start)
			if err != nil {
				return TS{}, fmt.Errorf("backup %s starts at %q: %w", backups[i].ID, backups[i].Start, archive.ErrCorrupt)
			}
			return ts, nil
		}
	}
	return TS{}, nil
}

// Newest returns the newest oplog entry's timestamp; ok is false when the
// oplog is empty.
func Newest(ctx context.Context, c *mongo.Client) (ts TS, ok bool, err error) {
	return edge(ctx, c.Database("local").Collection("oplog.rs"), -1)
}

// edge returns the oldest (dir 1) or newest (dir -1) entry's timestamp.
func edge(ctx context.Context, oplog *mongo.Collection, dir int) (TS, bool, error) {
	var doc struct {
		TS bson.Timestamp `bson:"ts"`
	}
	err := oplog.FindOne(ctx, bson.D{}, options.FindOne().SetSort(bson.D{{Key: "$natural", Value: dir}}).
		SetProjection(bson.D{{Key: "ts", Value: 1}})).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return TS{}, false, nil
	}
	if err != nil {
		return TS{}, false, fmt.Errorf("read the oplog's edge: %w", err)
	}
	return FromBSON(doc.TS), true, nil
}

// follow tails from t.last until the cursor dies (nil) or fails.
func (t *tailer) follow(ctx context.Context, c *mongo.Client, oplog *mongo.Collection) (progressed bool, err error) {
	from := t.last
	if t.src.Flavour == FlavourFerretDB {
		from = ferretOverlapStart(t.last)
	}
	opts := options.Find().SetCursorType(options.TailableAwait).SetMaxAwaitTime(t.awaitTime()).SetBatchSize(tailBatch)
	if t.src.Flavour == FlavourFerretDB {
		opts = ferretCursor(opts)
	}
	cur, err := oplog.Find(ctx, bson.D{{Key: "ts", Value: bson.D{{Key: "$gte", Value: from.BSON()}}}}, opts)
	if err != nil {
		if err := t.cursorErr(ctx, oplog, err); !errors.Is(err, errRestarted) {
			return false, err
		}
		return false, nil
	}
	defer cur.Close(context.WithoutCancel(ctx))
	t.cfg.Log.Debug("tailing the oplog", "from", from, "last", t.last)
	// The cursor is open: if the resume point is still in the oplog now,
	// nothing between it and what the cursor returns can be lost. On
	// FerretDB, where the check is a scan of the whole oplog, it is made
	// once the cursor brings a new entry: a read that finds nothing new
	// has lost nothing.
	checked := false
	check := func() (bool, error) {
		if checked {
			return true, nil
		}
		checked = true
		if err := t.checkResume(ctx, oplog); err != nil {
			if errors.Is(err, errRestarted) {
				return false, nil // re-issue the find from the new start
			}
			return false, err
		}
		return true, nil
	}
	if t.src.Flavour != FlavourFerretDB {
		if ok, err := check(); !ok {
			return false, err
		}
	}
	readMajority := t.majorityReader(c)
	majority, hasMajority := TS{}, false
	if readMajority != nil {
		if majority, hasMajority, err = readMajority(ctx); err != nil {
			return false, err
		}
	}
	idle := 0
	for {
		asked := time.Now()
		if cur.TryNext(ctx) {
			idle = 0
			e, err := ParseEntry(bson.Raw(cur.Current))
			if err != nil {
				return progressed, fmt.Errorf("read oplog after %s: %w", t.last, err)
			}
			for hasMajority && majority.Less(e.TS) {
				// Not majority-committed yet: it could still roll back. Make
				// what is committed durable and wait for the commit point.
				if err := t.flush(ctx); err != nil {
					return progressed, err
				}
				if err := sleep(ctx, 20*time.Millisecond); err != nil {
					return progressed, err
				}
				if majority, _, err = readMajority(ctx); err != nil {
					return progressed, err
				}
			}
			if t.accept(e) {
				// Only a new entry ends a quiet spell (and a caught-up
				// claim): FerretDB's re-reads return the overlap window's
				// entries again every time.
				t.quiet, t.drained = time.Time{}, time.Time{}
				if ok, err := check(); !ok {
					return progressed, err
				}
				if err := t.append(ctx, e); err != nil {
					return progressed, err
				}
				progressed = true
			}
		} else {
			if err := cur.Err(); err != nil {
				if err := t.cursorErr(ctx, oplog, err); !errors.Is(err, errRestarted) {
					return progressed, err
				}
				return progressed, nil
			}
			if t.quiet.IsZero() {
				t.quiet = time.Now()
			}
			// Everything written before the read was asked for has been
			// read: on an idle source the caught-up time keeps moving, so
			// the RPO measured from it stays small. (FerretDB can show an
			// entry after a later one: only what is older than the
			// overlap it re-reads counts as seen.)
			t.drained = asked
			if t.src.Flavour == FlavourFerretDB {
				t.drained = asked.Add(-ferretOverlap * time.Second)
			}
			if cur.ID() == 0 {
				return progressed, t.flushDue(ctx)
			}
			// FerretDB's await cursors can stall for good while entries
			// keep coming: an idle one is replaced by a fresh find.
			if idle++; t.src.Flavour == FlavourFerretDB && idle >= ferretIdleAwaits {
				return progressed, nil
			}
			if t.src.Flavour == FlavourFerretDB {
				if err := t.flushDue(ctx); err != nil {
					return progressed, err
				}
				if err := sleep(ctx, ferretIdleSleep(time.Since(t.quiet))); err != nil {
					return progressed, err
				}
			}
		}
		if err := t.flushDue(ctx); err != nil {
			return progressed, err
		}
	}
}

const tailBatch = 256

// majorityReader returns how to read the majority commit point, nil when
// the server has none (FerretDB).
func (t *tailer) majorityReader(c *mongo.Client) func(context.Context) (TS, bool, error) {
	if t.cfg.majority != nil {
		return t.cfg.majority
	}
	if t.src.Flavour == FlavourMongoDB {
		return func(ctx context.Context) (TS, bool, error) { return ReadMajority(ctx, c) }
	}
	return nil
}

func (t *tailer) awaitTime() time.Duration {
	if t.src.Flavour == FlavourFerretDB {
		return ferretAwait
	}
	return max(t.cfg.FlushInterval/2, 10*time.Millisecond)
}

// accept drops entries already appended: before the resume point (MongoDB
// returns oplog entries in timestamp order) or seen in the overlap window.
func (t *tailer) accept(e Entry) bool {
	if _, dup := t.seen[e.Key]; dup {
		return false
	}
	if t.src.Flavour != FlavourFerretDB && !t.last.Less(e.TS) {
		return false
	}
	return true
}

func (t *tailer) append(ctx context.Context, e Entry) error {
	t.seen[e.Key] = e.TS
	data := e.Raw
	if t.w.Pending() == 0 {
		data = append(SegmentHeader(), e.Raw...)
	}
	if t.last.Less(e.TS) {
		t.last = e.TS
	}
	t.real = true
	when := e.Wall
	if when.IsZero() {
		when = time.Unix(int64(e.TS.T), 0).UTC()
	}
	return t.w.Append(ctx, data, archive.Position{End: t.last.String(), Time: when, Events: 1})
}

func (t *tailer) flushDue(ctx context.Context) error {
	if time.Since(t.flushed) < t.cfg.FlushInterval {
		return nil
	}
	return t.flush(ctx)
}

func (t *tailer) flush(ctx context.Context) error {
	t.flushed = time.Now()
	if t.w.Pending() > 0 {
		if err := t.w.Flush(ctx); err != nil {
			return err
		}
		t.prune()
	}
	d, ok := t.w.Durable()
	if !ok {
		return nil
	}
	end, err := ParseTS(d.End)
	if err != nil {
		return err
	}
	t.cfg.Log.Debug("oplog durable", "end", end)
	if t.cfg.Progress != nil {
		t.cfg.Progress(end)
	}
	if t.cfg.CaughtUp != nil && !t.drained.IsZero() && t.w.Pending() == 0 {
		t.cfg.CaughtUp(t.drained)
	}
	if !t.cfg.Until.IsZero() && !end.Less(t.cfg.Until) {
		return errDone
	}
	return nil
}

// prune forgets keys older than any re-read can reach.
func (t *tailer) prune() {
	horizon := ferretOverlapStart(t.last)
	for k, ts := range t.seen {
		if ts.Less(horizon) {
			delete(t.seen, k)
		}
	}
}

// checkResume proves the oplog still reaches back to the resume point.
func (t *tailer) checkResume(ctx context.Context, oplog *mongo.Collection) error {
	if t.trusted && !t.real {
		return nil
	}
	err := oplog.FindOne(ctx, bson.D{{Key: "ts", Value: bson.D{{Key: "$lte", Value: t.last.BSON()}}}},
		options.FindOne().SetProjection(bson.D{{Key: "ts", Value: 1}})).Err()
	if err == nil {
		return nil
	}
	if !errors.Is(err, mongo.ErrNoDocuments) {
		return fmt.Errorf("check the oplog still holds %s: %w", t.last, err)
	}
	// A capped collection drops entries only to make room for new ones,
	// so an empty oplog has lost nothing (a fresh FerretDB after a base
	// backup of it).
	if _, any, err := edge(ctx, oplog, 1); err != nil || !any {
		return err
	}
	return t.rollover(ctx, oplog, "the oplog no longer holds the archive's end")
}

func (t *tailer) cursorErr(ctx context.Context, oplog *mongo.Collection, err error) error {
	var se mongo.ServerError
	if errors.As(err, &se) && se.HasErrorCode(cappedPositionLost) {
		return t.rollover(ctx, oplog, "CappedPositionLost: the oplog was overwritten under the cursor")
	}
	return fmt.Errorf("tail the oplog from %s: %w", t.last, err)
}

// rollover records the gap in the repository, so status shows it for good,
// and returns ErrRollover.
func (t *tailer) rollover(ctx context.Context, oplog *mongo.Collection, why string) error {
	g := archive.GapRecord{Engine: Engine, Detected: time.Now().UTC(), From: t.last.String(), Reason: why}
	if oldest, ok, err := edge(ctx, oplog, 1); err == nil && ok {
		g.To = oldest.String()
	}
	gapErr := fmt.Errorf("%w: archived up to %s, the oldest entry in the oplog is %s: %s", ErrRollover, g.From, g.To, why)
	if err := t.cfg.Repo.RecordGap(context.WithoutCancel(ctx), g); err != nil {
		return fmt.Errorf("%w (and recording it failed: %v)", gapErr, err)
	}
	return t.continueAfterGap(ctx, oplog, gapErr)
}

// errRestarted: the stream continues from a new base after a gap; the
// find is re-issued from there.
var errRestarted = errors.New("stream restarted after a gap")

// continueAfterGap restarts the stream at a point a base backup needs —
// the newest base's start, or StartAt of a backup archiving its own window
// — when that lies after the lost range and the oplog still holds it: the
// remedy for a gap is a new base, and its oplog must then be archived. The
// chain shows the break; the gap stays recorded. Otherwise gapErr stands.
func (t *tailer) continueAfterGap(ctx context.Context, oplog *mongo.Collection, gapErr error) error {
	restart, err := newestBaseStart(ctx, t.cfg.Repo)
	if err != nil {
		return fmt.Errorf("%w (and reading backups failed: %v)", gapErr, err)
	}
	if restart.Less(t.cfg.StartAt) {
		restart = t.cfg.StartAt
	}
	if !t.last.Less(restart) {
		return gapErr
	}
	if err := oplog.FindOne(ctx, bson.D{{Key: "ts", Value: bson.D{{Key: "$lte", Value: restart.BSON()}}}}).Err(); err != nil {
		return gapErr // the new base's start is gone too
	}
	// Closed, not just flushed: segments before the gap must never be
	// consolidated with segments after it, which would hide the break.
	if err := t.w.Close(ctx); err != nil {
		return err
	}
	t.cfg.Log.Error("oplog gap recorded; continuing from the newest base backup's start", "gap", gapErr, "from", restart)
	t.w.Restart(restart.String())
	t.last, t.real = restart, true
	clear(t.seen)
	return errRestarted
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
