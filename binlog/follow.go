package binlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/tidemark/tidemark/archive"
)

// Following a failover. A source naming several servers is resolved on
// every connect to the one that is a primary (not a replica, read_only
// off), the one streamed from so far first. When that is another server
// than before (a promoted replica), its binlog continues the archive from
// the GTID state the archive ends at: the stream of the old primary ends,
// and the new server's stream (binlog/<its server id>) starts at the
// offset in its own binlog where that state is reached. Its binlog must
// hold the archive's last transactions (a replica logs them with
// log_slave_updates); when the old primary's last archived transactions
// never reached it, the histories fork there: a gap naming those GTIDs.

// resolve connects to the server to stream from and inspects it.
func (s *streamer) resolve(ctx context.Context) (*client.Conn, *serverInfo, error) {
	if len(s.cfg.Sources) == 1 {
		conn, si, err := probe(ctx, s.src)
		return conn, si, err
	}
	order := []Source{s.src}
	for _, src := range s.cfg.Sources {
		if src != s.src {
			order = append(order, src)
		}
	}
	var why []string
	misconfigured := true // every server refused for a reason no reconnect fixes
	for _, src := range order {
		conn, si, err := probe(ctx, src)
		if err != nil {
			err = missingPrivilege(err)
			misconfigured = misconfigured && errors.Is(err, archive.ErrMisconfigured)
			why = append(why, err.Error())
			continue
		}
		if si.Replica || si.ReadOnly {
			conn.Close()
			misconfigured = false // a promotion may be under way
			why = append(why, fmt.Sprintf("%s (server id %d) is a replica or read-only", src.Addr(), si.ServerID))
			continue
		}
		s.src = src
		return conn, si, nil
	}
	err := fmt.Errorf("no primary among %s: %s", addrs(s.cfg.Sources), strings.Join(why, "; "))
	if misconfigured {
		err = fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return nil, nil, err
}

func probe(ctx context.Context, src Source) (*client.Conn, *serverInfo, error) {
	conn, err := src.Connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	si, err := inspect(conn)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("%s: %w", src.Addr(), err)
	}
	return conn, si, nil
}

func addrs(srcs []Source) string {
	a := make([]string, len(srcs))
	for i, s := range srcs {
		a[i] = s.Addr()
	}
	return strings.Join(a, ",")
}

// archiveEnd is where the archived binlog ends: the end of the stream
// whose newest transaction is the newest (zero when nothing is archived).
func archiveEnd(ctx context.Context, repo *archive.Repository) (Position, error) {
	names, err := repo.Streams(ctx, StreamPrefix)
	if err != nil {
		return Position{}, err
	}
	var end Position
	var newest time.Time
	for _, n := range names {
		chain, err := repo.ReadStream(ctx, n)
		if err != nil {
			return Position{}, err
		}
		last, ok := chain.Last()
		if !ok || (!end.IsZero() && !last.LastTime.After(newest)) {
			continue
		}
		if end, err = ParsePosition(last.End); err != nil {
			return Position{}, fmt.Errorf("stream %s ends at an unreadable position: %w", n, err)
		}
		newest = last.LastTime
	}
	return end, nil
}

// continueAt finds where in the server's binlog the archive, ending at
// end, continues: the start of the first transaction the archive does
// not hold, in the file that holds it.
func continueAt(c *client.Conn, si *serverInfo, addr string, end Position) (Position, error) {
	want, err := ParseMariaState(end.GTID)
	if err != nil || len(want) == 0 {
		return Position{}, fmt.Errorf("%w: the archive ends at %s, without a GTID state: it cannot be continued on %s (server id %d)", ErrGap, end, addr, si.ServerID)
	}
	logged, err := (&serverInfo{GTIDState: si.GTIDState}).history()
	if err != nil {
		return Position{}, err
	}
	applied, err := (&serverInfo{SlavePos: si.SlavePos}).history()
	if err != nil {
		return Position{}, err
	}
	for _, d := range want.domains() {
		g := want[d]
		o := origin{d, g.Server}
		seq, ok := logged[o]
		switch {
		case !ok && applied[o] >= g.Seq:
			return Position{}, fmt.Errorf("%w: %s (server id %d) applied the archive's %s as a replica but did not log it (log_slave_updates is off): its binlog cannot continue the archive",
				ErrUnsupported, addr, si.ServerID, g)
		case !ok:
			return Position{}, fmt.Errorf("%w: %s (server id %d) has no GTID of domain %d from server %d in its binlog (gtid_binlog_state %q): it is not a member of the archived cluster",
				archive.ErrSourceMismatch, addr, si.ServerID, d, g.Server, si.GTIDState)
		case seq < g.Seq:
			return Position{}, fmt.Errorf("%w: GTIDs %d-%d-%d to %s, archived from the old primary, never reached %s (server id %d, at %d-%d-%d in that domain): the history forks after %d-%d-%d",
				ErrGap, d, g.Server, seq+1, g, addr, si.ServerID, d, g.Server, seq, d, g.Server, seq)
		}
	}
	for i := len(si.Files) - 1; i >= 0; i-- {
		start, err := fileStartState(c, si.Files[i])
		if err != nil {
			return Position{}, err
		}
		if !atOrBefore(start, want) {
			continue
		}
		pos, found, err := firstNotIn(c, si.Files[i], want)
		if err != nil {
			return Position{}, err
		}
		at := Position{File: si.Files[i], Pos: pos, GTID: want.String()}
		if !found && i+1 < len(si.Files) {
			at.File, at.Pos = si.Files[i+1], 4
		}
		return at, verifyStateAt(c, at, want)
	}
	return Position{}, fmt.Errorf("%w: %s (server id %d) has no binlog file from before the archive's end %s (purged?); its oldest is %v",
		ErrGap, addr, si.ServerID, want, si.Files)
}

// atOrBefore reports whether a state is at or before want in every domain
// of want.
func atOrBefore(st, want MariaState) bool {
	for d, g := range want {
		if st[d].Seq > g.Seq {
			return false
		}
	}
	return true
}

// fileStartState reads a binlog file's Gtid_list event: the state at its
// start.
func fileStartState(c *client.Conn, file string) (MariaState, error) {
	r, err := c.Execute(fmt.Sprintf("SHOW BINLOG EVENTS IN %s LIMIT 4", quote(file)))
	if err != nil {
		return nil, fmt.Errorf("read the start of binlog %s: %w", file, err)
	}
	for i := range r.RowNumber() {
		typ, _ := r.GetStringByName(i, "Event_type")
		if typ != "Gtid_list" {
			continue
		}
		info, _ := r.GetStringByName(i, "Info")
		// One entry per domain and origin server: the newest per domain
		// is the state.
		st := MariaState{}
		if err := st.mergeList(strings.Trim(info, "[] ")); err != nil {
			return nil, fmt.Errorf("binlog %s: GTID list %q: %w", file, info, err)
		}
		return st, nil
	}
	return MariaState{}, nil
}

// firstNotIn scans a binlog file for the first transaction want does not
// hold; it returns its offset (found), or the end of the file.
func firstNotIn(c *client.Conn, file string, want MariaState) (pos uint32, found bool, err error) {
	const page = 1000
	pos = 4
	for from := uint32(4); ; {
		r, err := c.Execute(fmt.Sprintf("SHOW BINLOG EVENTS IN %s FROM %d LIMIT %d", quote(file), from, page))
		if err != nil {
			return 0, false, fmt.Errorf("read binlog %s from %d: %w", file, from, err)
		}
		n := r.RowNumber()
		for i := range n {
			typ, _ := r.GetStringByName(i, "Event_type")
			at, _ := r.GetUintByName(i, "Pos")
			endAt, _ := r.GetUintByName(i, "End_log_pos")
			if typ == "Gtid" {
				info, _ := r.GetStringByName(i, "Info")
				f := strings.Fields(info)
				if len(f) == 0 {
					return 0, false, fmt.Errorf("binlog %s at %d: GTID event %q", file, at, info)
				}
				g, err := ParseMariaGTID(f[len(f)-1])
				if err != nil {
					return 0, false, fmt.Errorf("binlog %s at %d: %w", file, at, err)
				}
				if !want.Contains(g) {
					return uint32(at), true, nil
				}
			}
			pos = uint32(endAt)
		}
		if n < page {
			return pos, false, nil
		}
		from = pos
	}
}

// verifyStateAt checks with the server that its binlog at p has the state
// want in want's domains (BINLOG_GTID_POS), so the scan above cannot have
// misread the events.
func verifyStateAt(c *client.Conn, p Position, want MariaState) error {
	if p.Pos == 4 {
		return nil // a file's start: its Gtid_list was read above
	}
	r, err := c.Execute("SELECT BINLOG_GTID_POS(?, ?)", p.File, p.Pos)
	if err != nil {
		return fmt.Errorf("BINLOG_GTID_POS(%s, %d): %w", p.File, p.Pos, err)
	}
	got, _ := r.GetString(0, 0)
	st, err := ParseMariaState(got)
	if err != nil {
		return fmt.Errorf("BINLOG_GTID_POS(%s, %d) = %q: %w", p.File, p.Pos, got, err)
	}
	for d, g := range want {
		if st[d] != g {
			return fmt.Errorf("%w: the server's binlog at %s:%d is at GTID %q, the archive ends at %s", ErrGap, p.File, p.Pos, got, want)
		}
	}
	return nil
}

// quote makes a binlog file name a SQL string literal (SHOW BINLOG EVENTS
// takes no placeholders).
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
