package binlog

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/google/uuid"

	"github.com/tidemark/tidemark/archive"
)

// handle takes one event as the server sent it. Connection artefacts (the
// fake rotate and format description on connect, heartbeats) only steer
// the position; everything else is checked to continue exactly where the
// previous event ended, grouped into transactions, and appended to the
// archive one whole transaction at a time, so every segment ends at a
// transaction boundary and its End is a valid resume point.
func (s *streamer) handle(ctx context.Context, raw []byte) error {
	e, err := parseEvent(raw)
	if err != nil {
		return err
	}
	switch {
	case isHeartbeat(e.Type):
		return nil
	case e.Type == replication.ROTATE_EVENT && e.Artificial():
		return s.fakeRotate(e)
	case e.Type == replication.FORMAT_DESCRIPTION_EVENT:
		return s.formatDescription(e)
	case e.Artificial():
		return nil
	}
	if s.format == nil {
		return fmt.Errorf("%w: %s event before the format description", ErrCorrupt, e.Type)
	}
	if e.Start() != s.next || e.LogPos < uint32(len(e.Raw)) {
		return fmt.Errorf("%w: the server sent a %s event at %s:%d, the archive continues at %d", ErrGap, e.Type, s.cur.File, e.Start(), s.next)
	}
	s.next = e.LogPos
	u, err := s.grp.add(s.format, e)
	if err != nil || u == nil {
		return err
	}
	return s.appendUnit(ctx, u)
}

// fakeRotate: on connect the server names the file it sends from; after
// the end of a file that is not the active one it names the next.
func (s *streamer) fakeRotate(e Event) error {
	// The first one of a connection is sent before any format description
	// and carries no checksum; later ones carry the file's.
	body := e.Raw[headerLen:]
	if s.format != nil {
		var err error
		if body, err = s.format.Body(e); err != nil {
			return err
		}
	}
	name, pos, err := rotateOf(body)
	if err != nil {
		return err
	}
	if s.grp.pending() {
		return fmt.Errorf("%w: the server switched to %s inside a transaction of %s", ErrGap, name, s.cur.File)
	}
	if name == s.cur.File {
		if pos != s.cur.Pos {
			return fmt.Errorf("%w: the server resumed at %s:%d, the archive continues at %s", ErrGap, name, pos, s.cur)
		}
		return nil
	}
	if pos != 4 || !s.cur.before(Position{File: name, Pos: pos}) {
		return fmt.Errorf("%w: the server moved from %s to %s:%d", ErrGap, s.cur, name, pos)
	}
	s.cur.File, s.cur.Pos, s.next = name, 4, 4
	s.format = nil
	return nil
}

// formatDescription: the one at offset 4 of a file is the file's own and
// becomes the header of its segments; the one sent when resuming inside a
// file is a copy (log_pos 0) and only describes the events after it.
func (s *streamer) formatDescription(e Event) error {
	f, err := parseFormat(e)
	if err != nil {
		return err
	}
	s.format = f
	if e.LogPos != 0 && e.Flags&flagArtificial == 0 {
		if e.Start() != 4 || s.next != 4 {
			return fmt.Errorf("%w: format description at %s:%d, the archive continues at %d", ErrGap, s.cur.File, e.Start(), s.next)
		}
		s.cur.Pos, s.next = e.LogPos, e.LogPos
		s.header, s.hfile = segmentHeader(e.Raw), s.cur.File
		return nil
	}
	if s.hfile != s.cur.File {
		s.header, s.hfile = segmentHeader(e.Raw), s.cur.File
	}
	return nil
}

func (s *streamer) appendUnit(ctx context.Context, u *Unit) error {
	first := u.Events[0]
	body, err := s.format.Body(first)
	if err != nil {
		return err
	}
	if err := s.trackGTID(u, first, body); err != nil {
		return err
	}
	end := Position{File: s.cur.File, Pos: s.next, GTID: s.gtidString()}
	if first.Type == replication.ROTATE_EVENT {
		if end.File, end.Pos, err = rotateOf(body); err != nil {
			return err
		}
	}
	before, _ := s.w.Durable()
	if err := s.w.Append(ctx, u.Bytes(), archive.Position{Group: s.cur.File, End: end.String(), Time: u.Time,
		Events: int64(len(u.Events)), Header: s.header}); err != nil {
		return err
	}
	s.events += int64(len(u.Events))
	s.cur, s.next = end, end.Pos
	if after, _ := s.w.Durable(); after.Last != before.Last {
		s.report() // a unit too big to hold was made durable inside Append
	}
	return nil
}

// trackGTID keeps the GTID state and refuses a hole or a step back inside
// a MariaDB domain: with positions checked event by event that can only
// mean the server's own history is broken.
func (s *streamer) trackGTID(u *Unit, first Event, body []byte) error {
	switch first.Type {
	case replication.MARIADB_GTID_LIST_EVENT:
		if len(s.maria) == 0 && s.maria != nil {
			st, err := mariaGTIDList(body)
			if err != nil {
				return err
			}
			s.maria = st
		}
		return nil
	case replication.PREVIOUS_GTIDS_EVENT:
		if s.mysql == nil && s.maria == nil {
			var pe replication.PreviousGTIDsEvent
			if len(body) >= 8 {
				if err := pe.Decode(body); err == nil {
					if set, err := mysql.ParseMysqlGTIDSet(pe.GTIDSets); err == nil {
						s.mysql = set.(*mysql.MysqlGTIDSet)
					}
				}
			}
		}
		return nil
	}
	if !u.Txn || u.GTID == "" {
		return nil
	}
	if first.Type == replication.MARIADB_GTID_EVENT && s.maria != nil {
		g := u.Maria
		if prev, ok := s.maria[g.Domain]; ok && g.Seq != prev.Seq+1 {
			return fmt.Errorf("%w: GTID %s follows %s in domain %d at %s:%d (a hole or a step back in the server's history)",
				ErrGap, g, prev, g.Domain, s.cur.File, first.Start())
		}
		s.maria[g.Domain] = g
		return nil
	}
	if first.Type == replication.GTID_EVENT && len(body) >= 25 {
		if s.mysql == nil {
			set, _ := mysql.ParseMysqlGTIDSet("")
			s.mysql = set.(*mysql.MysqlGTIDSet)
		}
		sid, err := uuid.FromBytes(body[1:17])
		if err != nil {
			return fmt.Errorf("%w: GTID event: %v", ErrCorrupt, err)
		}
		s.mysql.AddGTID(sid, int64(binary.LittleEndian.Uint64(body[17:])))
	}
	return nil
}
