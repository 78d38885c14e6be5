package binlog

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// Position is a point in the source's binlog: the file and byte offset of
// the next event, and the GTID state after everything before it. It is the
// resume point the streamer stores as a segment's Start/End.
//
// Encoding (docs/format.md, "Binlog segments"): FILE:POS, then, when the
// server has GTIDs, '#' and the GTID state — MariaDB's comma-separated
// domain-server-seq list sorted by domain, or MySQL's uuid:interval set as
// the server prints it. Example: mysql-bin.000003:1234#0-1-57,1-2-9.
//
// A GTID-only position (no file, "#0-1-57") is a point in the cluster's
// history rather than in one server's files: a base backup taken on a
// replica, whose own files mean nothing for the primary's stream, is
// entered by GTID in whichever stream holds it.
type Position struct {
	File string
	Pos  uint32
	GTID string
}

// ErrBadPosition marks a position or target that cannot be parsed.
var ErrBadPosition = errors.New("invalid binlog position")

func (p Position) String() string {
	if p.GTIDOnly() {
		return "#" + p.GTID
	}
	s := p.File + ":" + strconv.FormatUint(uint64(p.Pos), 10)
	if p.GTID != "" {
		s += "#" + p.GTID
	}
	return s
}

// IsZero reports an unset position.
func (p Position) IsZero() bool { return p.File == "" && p.GTID == "" }

// GTIDOnly reports a position named by its GTID state alone.
func (p Position) GTIDOnly() bool { return p.File == "" && p.GTID != "" }

// ParsePosition parses what Position.String produces (FILE:POS[#GTIDS] or
// #GTIDS).
func ParsePosition(s string) (Position, error) {
	body, gtid, hasGTID := strings.Cut(s, "#")
	if body == "" && hasGTID {
		st, err := ParseMariaState(gtid)
		if err != nil || len(st) == 0 {
			return Position{}, fmt.Errorf("%w %q: a GTID-only position needs a MariaDB GTID list", ErrBadPosition, s)
		}
		return Position{GTID: st.String()}, nil
	}
	i := strings.LastIndexByte(body, ':')
	if i <= 0 {
		return Position{}, fmt.Errorf("%w %q: want FILE:POS[#GTIDS]", ErrBadPosition, s)
	}
	file, num := body[:i], body[i+1:]
	if err := validFile(file); err != nil {
		return Position{}, fmt.Errorf("%w %q: %v", ErrBadPosition, s, err)
	}
	pos, err := strconv.ParseUint(num, 10, 32)
	if err != nil || pos < 4 || num != strconv.FormatUint(pos, 10) {
		return Position{}, fmt.Errorf("%w %q: offset %q is not a number of at least 4", ErrBadPosition, s, num)
	}
	if hasGTID {
		if gtid == "" || strings.ContainsAny(gtid, "# \t\n") {
			return Position{}, fmt.Errorf("%w %q: bad GTID part", ErrBadPosition, s)
		}
	}
	return Position{File: file, Pos: uint32(pos), GTID: gtid}, nil
}

// validFile accepts binlog file names: printable, no separators our
// encodings use, not a path.
func validFile(f string) error {
	if f == "" || len(f) > 255 || strings.ContainsAny(f, "#/\\:") {
		return fmt.Errorf("binlog file name %q", f)
	}
	for _, r := range f {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("binlog file name %q", f)
		}
	}
	return nil
}

// before orders positions within the one server's binlog: file names sort
// by their numeric suffix, which is fixed width on MySQL and MariaDB.
func (p Position) before(q Position) bool {
	if p.File != q.File {
		return p.File < q.File
	}
	return p.Pos < q.Pos
}

// MariaGTID is one MariaDB GTID, domain-server-seq.
type MariaGTID struct {
	Domain, Server uint32
	Seq            uint64
}

func (g MariaGTID) String() string { return fmt.Sprintf("%d-%d-%d", g.Domain, g.Server, g.Seq) }

// ParseMariaGTID parses domain-server-seq.
func ParseMariaGTID(s string) (MariaGTID, error) {
	parts := strings.Split(s, "-")
	if len(parts) != 3 {
		return MariaGTID{}, fmt.Errorf("MariaDB GTID %q: want domain-server-seq", s)
	}
	d, err1 := strconv.ParseUint(parts[0], 10, 32)
	sv, err2 := strconv.ParseUint(parts[1], 10, 32)
	q, err3 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return MariaGTID{}, fmt.Errorf("MariaDB GTID %q: want domain-server-seq numbers", s)
	}
	return MariaGTID{Domain: uint32(d), Server: uint32(sv), Seq: q}, nil
}

// MariaState is a MariaDB GTID position: the last GTID per domain.
type MariaState map[uint32]MariaGTID

// ParseMariaState parses a comma-separated domain-server-seq list.
func ParseMariaState(s string) (MariaState, error) {
	st := MariaState{}
	if strings.TrimSpace(s) == "" {
		return st, nil
	}
	for _, part := range strings.Split(s, ",") {
		g, err := ParseMariaGTID(strings.TrimSpace(part))
		if err != nil {
			return nil, err
		}
		if _, dup := st[g.Domain]; dup {
			return nil, fmt.Errorf("MariaDB GTID position %q names domain %d twice", s, g.Domain)
		}
		st[g.Domain] = g
	}
	return st, nil
}

// String is canonical: sorted by domain, so equal states compare equal as
// segment Start/End strings.
func (st MariaState) String() string {
	ds := st.domains()
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = st[d].String()
	}
	return strings.Join(parts, ",")
}

// Clone copies the state.
func (st MariaState) Clone() MariaState {
	c := make(MariaState, len(st))
	for k, v := range st {
		c[k] = v
	}
	return c
}

// Contains reports whether g is at or before the state's position in its
// domain (it is already applied / archived).
func (st MariaState) Contains(g MariaGTID) bool {
	cur, ok := st[g.Domain]
	return ok && g.Seq <= cur.Seq
}
