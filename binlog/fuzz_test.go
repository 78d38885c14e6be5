package binlog

import (
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/go-mysql-org/go-mysql/replication"
)

// event builds one checksummed event (tests and fuzz seeds).
func event(typ replication.EventType, serverID, logPos uint32, body []byte) []byte {
	size := headerLen + len(body) + checksumLen
	b := make([]byte, headerLen, size)
	binary.LittleEndian.PutUint32(b[0:], 1796040000)
	b[4] = byte(typ)
	binary.LittleEndian.PutUint32(b[5:], serverID)
	binary.LittleEndian.PutUint32(b[9:], uint32(size))
	binary.LittleEndian.PutUint32(b[13:], logPos)
	b = append(b, body...)
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// seedSegment is a small valid segment: a MariaDB format description, a
// GTID, BEGIN, and an XID.
func seedSegment() []byte {
	fd := make([]byte, 2+50+4+1)
	binary.LittleEndian.PutUint16(fd, 4)
	copy(fd[2:], "10.11.19-MariaDB-log")
	fd[56] = headerLen
	post := make([]byte, 168)
	post[replication.QUERY_EVENT-1] = 13
	post[replication.WRITE_ROWS_EVENTv1-1] = 8
	fd = append(append(fd, post...), 1) // CRC32
	fde := event(replication.FORMAT_DESCRIPTION_EVENT, 1, 4+uint32(headerLen+len(fd)+checksumLen), fd)
	pos := binary.LittleEndian.Uint32(fde[13:])
	seg := segmentHeader(fde)
	add := func(typ replication.EventType, body []byte) {
		n := uint32(headerLen + len(body) + checksumLen)
		pos += n
		seg = append(seg, event(typ, 1, pos, body)...)
	}
	gtid := make([]byte, 13)
	binary.LittleEndian.PutUint64(gtid, 7)
	add(replication.MARIADB_GTID_EVENT, gtid)
	q := []byte{9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 6, 0, 0, 4, 0, 0, 0, 0}
	q = append(append(q, "d\x00"...), "BEGIN"...)
	add(replication.QUERY_EVENT, q)
	add(replication.XID_EVENT, make([]byte, 8))
	return seg
}

// FuzzParseSegment: segment bytes from a repository (or a damaged one)
// never panic the parser or the transaction grouper, and whatever parses
// groups into whole transactions or fails with an error.
func FuzzParseSegment(f *testing.F) {
	f.Add(seedSegment())
	f.Add(fileMagic)
	f.Fuzz(func(t *testing.T, data []byte) {
		seg, err := ParseSegment(data)
		if err != nil {
			return
		}
		var g grouper
		for _, e := range seg.Events {
			if _, err := g.add(seg.Format, e); err != nil {
				return
			}
			if e.Type == replication.ROTATE_EVENT {
				if body, err := seg.Format.Body(e); err == nil {
					rotateOf(body)
				}
			}
			if body, err := seg.Format.Body(e); err == nil {
				seg.Format.RowsStmtEnd(e, body)
				mariaGTIDList(body)
			}
		}
	})
}

// FuzzParsePosition: positions read back from segment indexes round-trip.
func FuzzParsePosition(f *testing.F) {
	for _, s := range []string{"mysql-bin.000001:4", "mysql-bin.000003:1234#0-1-57,1-2-9", "b.1:99#3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5", "#0-1-57,1-2-9", "#", ":4", "x:3", "a#b:5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePosition(s)
		if err != nil {
			return
		}
		q, err := ParsePosition(p.String())
		if err != nil || q != p {
			t.Fatalf("%q parsed as %+v, which prints as %q and parses back as %+v (%v)", s, p, p.String(), q, err)
		}
		if st, err := ParseMariaState(p.GTID); err == nil {
			if st2, err := ParseMariaState(st.String()); err != nil || st2.String() != st.String() {
				t.Fatalf("GTID state %q does not round-trip: %v", st.String(), err)
			}
		}
	})
}

// FuzzParseStatusVars: query event status variables never panic.
func FuzzParseStatusVars(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 4, 33, 0, 33, 0, 8, 0, 12, 1, 'd', 0, 128, 1, 2, 3})
	f.Add([]byte{5, 3, 'U', 'T', 'C', 11, 1, 'u', 1, 'h', 12, 254})
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseStatusVars(b)
		ParseQuery(b)
	})
}

func TestSeedSegmentParses(t *testing.T) {
	seg, err := ParseSegment(seedSegment())
	if err != nil {
		t.Fatal(err)
	}
	var g grouper
	var units []*Unit
	for _, e := range seg.Events {
		u, err := g.add(seg.Format, e)
		if err != nil {
			t.Fatal(err)
		}
		if u != nil {
			units = append(units, u)
		}
	}
	if len(units) != 1 || units[0].GTID != "0-1-7" || len(units[0].Events) != 3 {
		t.Fatalf("units: %+v", units)
	}
	// A flipped byte fails its checksum.
	bad := seedSegment()
	bad[len(bad)-10] ^= 1
	if _, err := ParseSegment(bad); err == nil {
		t.Fatal("a corrupted segment parsed")
	}
}
