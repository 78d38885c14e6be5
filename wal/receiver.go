package wal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tidemark/tidemark/internal/supervise"
)

// statusInterval keeps standby status updates well inside the server's
// wal_sender_timeout (60 s by default) even when nothing flows.
const statusInterval = 10 * time.Second

// receiver holds the segment being filled and the durable position.
type receiver struct {
	cfg  Config
	w    writer
	g    Geometry
	tli  uint32
	conn *pgconn.PgConn

	segno        uint64
	buf          []byte // the current segment from its start up to received
	received     LSN
	durable      LSN // what the repository holds; all we ever acknowledge
	serverEnd    LSN // the server's WAL end as last reported
	lastFlush    time.Time
	lastStatus   time.Time
	pendingSince time.Time // when the oldest not yet durable WAL arrived
	progressed   bool
}

func newReceiver(cfg Config, w writer, pos position) *receiver {
	return &receiver{cfg: cfg, w: w, g: w.g, tli: pos.tli, segno: w.g.SegNo(pos.start),
		buf: make([]byte, 0, w.g.SegSize), received: pos.start, durable: pos.durable, lastFlush: time.Now()}
}

func (r *receiver) segStart() LSN { return r.g.SegStart(r.segno) }

// Synchronous mode flushes as soon as the server pauses (syncIdle without a
// message), so the commits of a burst share one repository write, and never
// holds WAL longer than syncMaxDelay or syncMaxPending.
const (
	syncIdle       = time.Millisecond
	syncMaxDelay   = 20 * time.Millisecond
	syncMaxPending = 1 << 20
)

// flushDue is how long until pending WAL must be flushed (≤ 0: now).
func (r *receiver) flushDue() time.Duration {
	if !r.cfg.Synchronous {
		return r.cfg.FlushInterval - time.Since(r.lastFlush)
	}
	if r.received-r.durable >= syncMaxPending {
		return 0
	}
	return min(syncIdle, syncMaxDelay-time.Since(r.pendingSince))
}

// run receives until ctx ends (then flushes what arrived and returns nil),
// the server ends the timeline, or something fails.
func (r *receiver) run(ctx context.Context, conn *pgconn.PgConn) (bool, error) {
	r.conn = conn
	for {
		if ctx.Err() != nil {
			return r.progressed, r.shutdown()
		}
		wait := statusInterval - time.Since(r.lastStatus)
		if r.received > r.durable {
			wait = min(wait, r.flushDue())
		}
		rctx, cancel := context.WithTimeout(ctx, max(wait, time.Millisecond))
		msg, err := conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return r.progressed, r.shutdown()
			}
			if pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) {
				if r.cfg.Synchronous && r.received > r.durable {
					// The server paused: make the burst durable now.
					if err := r.flush(ctx); err != nil {
						return r.progressed, err
					}
					continue
				}
				if err := r.tick(ctx); err != nil {
					return r.progressed, err
				}
				continue
			}
			return r.progressed, fmt.Errorf("receive: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if err := r.handle(ctx, m.Data); err != nil {
				return r.progressed, err
			}
		case *pgproto3.CopyDone:
			return r.progressed, r.endOfTimeline(ctx)
		case *pgproto3.ErrorResponse:
			return r.progressed, streamError(pgconn.ErrorResponseToPgError(m), r.received, r.tli)
		}
		if err := r.tick(ctx); err != nil {
			return r.progressed, err
		}
	}
}

// tick flushes when the interval is up and keeps status updates flowing.
func (r *receiver) tick(ctx context.Context) error {
	if r.received > r.durable && r.flushDue() <= 0 {
		return r.flush(ctx)
	}
	if time.Since(r.lastStatus) >= statusInterval {
		return r.sendStatus(ctx, false)
	}
	return nil
}

func (r *receiver) handle(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("keepalive: %w", err)
		}
		r.serverEnd = max(r.serverEnd, k.ServerWALEnd)
		if k.ReplyRequested {
			return r.sendStatus(ctx, false)
		}
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("XLogData: %w", err)
		}
		r.serverEnd = max(r.serverEnd, x.ServerWALEnd, x.WALStart+LSN(len(x.WALData)))
		if x.WALStart != r.received {
			return fmt.Errorf("XLogData at %s, expected %s: the stream is not contiguous", x.WALStart, r.received)
		}
		if r.received == r.durable {
			r.pendingSince = time.Now()
		}
		if err := r.append(ctx, x.WALData); err != nil {
			return err
		}
	}
	return nil
}

// append adds WAL to the current segment, archiving each segment whole as
// it completes.
func (r *receiver) append(ctx context.Context, data []byte) error {
	for len(data) > 0 {
		n := min(int(r.g.SegSize)-len(r.buf), len(data))
		r.buf = append(r.buf, data[:n]...)
		r.received += LSN(n)
		data = data[n:]
		if uint64(len(r.buf)) == r.g.SegSize {
			if err := r.w.putSegment(ctx, r.tli, r.segno, r.buf); err != nil {
				return fmt.Errorf("archive segment %s: %w", r.g.FileName(r.tli, r.segno), err)
			}
			r.durable = r.received
			r.progressed = true
			r.segno++
			r.buf = r.buf[:0]
			r.lastFlush = time.Now()
			if err := r.sendStatus(ctx, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush makes everything received durable as a part of the current
// segment, then acknowledges it.
func (r *receiver) flush(ctx context.Context) error {
	if r.received <= r.durable {
		return nil
	}
	from, to := uint64(r.durable-r.segStart()), uint64(r.received-r.segStart())
	if err := r.w.putPart(ctx, r.tli, r.segno, from, to, r.buf[from:to]); err != nil {
		return fmt.Errorf("archive WAL %s–%s: %w", r.durable, r.received, err)
	}
	r.durable = r.received
	r.progressed = true
	r.lastFlush = time.Now()
	return r.sendStatus(ctx, false)
}

// sendStatus reports the durable position as written, flushed and applied:
// never more than the repository holds, so the slot keeps the rest.
func (r *receiver) sendStatus(ctx context.Context, reply bool) error {
	err := pglogrepl.SendStandbyStatusUpdate(ctx, r.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: r.durable, WALFlushPosition: r.durable, WALApplyPosition: r.durable,
		ReplyRequested: reply})
	if err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	r.lastStatus = time.Now()
	if r.cfg.Progress != nil {
		r.cfg.Progress(Progress{Server: r.cfg.server.Addr, Slot: r.cfg.Slot, TLI: r.tli, Durable: r.durable, ServerEnd: max(r.serverEnd, r.durable)})
	}
	return nil
}

// shutdown flushes what arrived before a requested stop.
func (r *receiver) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.flush(ctx); err != nil {
		return fmt.Errorf("%w: %w (the slot still holds this WAL)", supervise.ErrFinalFlush, err)
	}
	r.cfg.Log.Info("WAL streaming stopped", "timeline", r.tli, "durable", r.durable)
	return nil
}

// endOfTimeline: the server finished this timeline (it was promoted, or we
// streamed an old timeline to its end). Archive the tail, then let Stream
// start a new session on the next timeline.
func (r *receiver) endOfTimeline(ctx context.Context) error {
	if err := r.flush(ctx); err != nil {
		return err
	}
	res, err := pglogrepl.SendStandbyCopyDone(ctx, r.conn)
	if err != nil {
		return fmt.Errorf("end of timeline %d: %w", r.tli, err)
	}
	if res != nil {
		r.cfg.Log.Info("timeline ended; following the next one", "timeline", r.tli, "at", r.durable, "next", res.Timeline, "switch", res.LSN)
	}
	return errTimelineSwitch
}

// streamError classifies an error the server sends while streaming: WAL
// recycled while we read our way to it is a gap (as at START_REPLICATION);
// anything else is retried.
func streamError(pgErr *pgconn.PgError, at LSN, tli uint32) error {
	if strings.Contains(pgErr.Message, "has already been removed") {
		return fmt.Errorf("%w: %s: the server no longer has WAL from %s on timeline %d; take a new base backup", ErrGap, pgErr.Message, at, tli)
	}
	return fmt.Errorf("server: %w", pgErr)
}
