package wal

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// position says where a session streams from.
type position struct {
	tli     uint32
	start   LSN // where START_REPLICATION begins: a segment boundary
	durable LSN // what the repository already holds on tli (start ≤ durable)
}

// startPosition resumes from the repository's durable end, else from
// cfg.StartAt, else from the server's current position — always at
// the start of that segment, so the segment can be archived whole. It
// follows timeline switches the server went through since.
func startPosition(ctx context.Context, conn *pgconn.PgConn, cfg Config, src *Source, state *State, slotLSN LSN, w writer) (position, error) {
	g := src.Geometry
	if src.ServerTLI > 1 {
		if err := storeHistories(ctx, conn, w, src.ServerTLI); err != nil {
			return position{}, err
		}
	}
	var pos position
	latest := state.Latest()
	switch {
	case latest != nil:
		pos.tli, pos.durable = latest.TLI, latest.End
		if pos.tli > src.ServerTLI {
			return position{}, fmt.Errorf("%w: the repository holds timeline %d but the server is on timeline %d: is this an older copy of the cluster?", errPermanent, pos.tli, src.ServerTLI)
		}
		if pos.tli < src.ServerTLI {
			hist, err := timelineHistory(ctx, conn, src.ServerTLI)
			if err != nil {
				return position{}, err
			}
			for pos.tli < src.ServerTLI {
				sw, next, ok := hist.switchOf(pos.tli)
				if !ok {
					return position{}, fmt.Errorf("%w: timeline %d is not an ancestor of the server's timeline %d", errPermanent, pos.tli, src.ServerTLI)
				}
				if pos.durable < sw {
					break // stream the rest of pos.tli; the server ends it at sw
				}
				// The new timeline's first segment repeats the old one's
				// bytes before the switch: archive it whole under its name.
				pos.tli, pos.durable = next, g.SegStart(g.SegNo(sw))
			}
		}
	case cfg.StartAt != 0:
		pos.tli, pos.durable = src.ServerTLI, g.SegStart(g.SegNo(cfg.StartAt))
	default:
		// An empty archive starts at the server's current position: WAL from
		// before the first base backup can never be replayed. (A slot's
		// restart_lsn can lie far back, at the last checkpoint's redo point.)
		// A slot created after IDENTIFY_SYSTEM (a checkpoint and segment
		// switch in between, say a backup's) may begin after XLogPos: begin
		// there then, not refuse it as a gap.
		pos.tli, pos.durable = src.ServerTLI, g.SegStart(g.SegNo(max(src.XLogPos, slotLSN)))
	}
	if latest == nil && slotLSN != 0 && g.SegNo(slotLSN) > g.SegNo(pos.durable) {
		return position{}, fmt.Errorf("%w: the slot %q starts at %s, after %s where archiving must begin", ErrGap, cfg.Slot, slotLSN, pos.durable)
	}
	pos.start = g.SegStart(g.SegNo(pos.durable))
	if latest != nil && slotLSN != 0 && g.SegNo(slotLSN) > g.SegNo(pos.start) {
		return position{}, fmt.Errorf("%w: the slot %q has moved to %s but the archive ends at %s: WAL in between may be gone from the server; take a new base backup",
			ErrGap, cfg.Slot, slotLSN, pos.durable)
	}
	return pos, nil
}

// history is a parsed timeline history file: each timeline and the LSN
// where it ended (0 for the file's own, still current, timeline).
type history []historyEntry

type historyEntry struct {
	tli uint32
	end LSN
}

// switchOf returns where tli ended and the timeline that followed it.
func (h history) switchOf(tli uint32) (LSN, uint32, bool) {
	for i, e := range h {
		if e.tli == tli {
			next := uint32(0)
			if i+1 < len(h) {
				next = h[i+1].tli
			}
			return e.end, next, next != 0
		}
	}
	return 0, 0, false
}

// parseHistory parses "parentTLI<TAB>switchpoint<TAB>reason" lines; the
// last entry's successor is the timeline the file belongs to.
func parseHistory(content []byte, owner uint32) (history, error) {
	var h history
	sc := bufio.NewScanner(bytes.NewReader(content))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("history line %q", line)
		}
		t, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("history line %q: %w", line, err)
		}
		sw, err := pglogrepl.ParseLSN(f[1])
		if err != nil {
			return nil, fmt.Errorf("history line %q: %w", line, err)
		}
		h = append(h, historyEntry{uint32(t), sw})
	}
	h = append(h, historyEntry{owner, 0})
	return h, sc.Err()
}

func timelineHistory(ctx context.Context, conn *pgconn.PgConn, tli uint32) (history, error) {
	res, err := pglogrepl.TimelineHistory(ctx, conn, int32(tli))
	if err != nil {
		return nil, fmt.Errorf("TIMELINE_HISTORY %d: %w", tli, err)
	}
	return parseHistory(res.Content, tli)
}

// storeHistories archives the history files of tli and its ancestors that
// the server still has (restores across timelines need them).
func storeHistories(ctx context.Context, conn *pgconn.PgConn, w writer, tli uint32) error {
	for t := tli; t > 1; t-- {
		res, err := pglogrepl.TimelineHistory(ctx, conn, int32(t))
		if err != nil {
			if t == tli {
				return fmt.Errorf("TIMELINE_HISTORY %d: %w", t, err)
			}
			return nil // older history files may be gone from the server
		}
		if err := w.putHistory(ctx, t, res.Content); err != nil {
			return fmt.Errorf("archive %s: %w", HistoryFileName(t), err)
		}
	}
	return nil
}

// startReplication enters COPY BOTH mode at pos.
func startReplication(ctx context.Context, conn *pgconn.PgConn, cfg Config, pos position) error {
	sql := fmt.Sprintf("START_REPLICATION PHYSICAL %s TIMELINE %d", pos.start, pos.tli)
	if !cfg.NoSlot {
		sql = fmt.Sprintf("START_REPLICATION SLOT %s PHYSICAL %s TIMELINE %d", cfg.Slot, pos.start, pos.tli)
	}
	conn.Frontend().SendQuery(&pgproto3.Query{String: sql})
	if err := conn.Frontend().Flush(); err != nil {
		return fmt.Errorf("send START_REPLICATION: %w", err)
	}
	for {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			return fmt.Errorf("START_REPLICATION: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyBothResponse:
			return nil
		case *pgproto3.NoticeResponse:
		case *pgproto3.ErrorResponse:
			pgErr := pgconn.ErrorResponseToPgError(m)
			if strings.Contains(pgErr.Message, "has already been removed") {
				return fmt.Errorf("%w: %s: the server no longer has WAL from %s on timeline %d; take a new base backup", ErrGap, pgErr.Message, pos.start, pos.tli)
			}
			if pgErr.Code == "55006" { // object_in_use: the slot is busy (a backup streaming its own WAL)
				return fmt.Errorf("START_REPLICATION: %v; retrying", pgErr)
			}
			return fmt.Errorf("%w: START_REPLICATION at %s timeline %d: %v", errPermanent, pos.start, pos.tli, pgErr)
		default:
			return fmt.Errorf("START_REPLICATION: unexpected %T", msg)
		}
	}
}
