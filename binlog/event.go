package binlog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/google/uuid"
	"github.com/tidemark/tidemark/archive"
)

// Every binlog file and every archived segment starts with this magic.
var fileMagic = []byte{0xfe, 'b', 'i', 'n'}

const (
	headerLen   = 19 // v4 event header
	checksumLen = 4
	maxEvent    = 1 << 30 // MySQL's max_allowed_packet ceiling; larger sizes are corruption

	flagArtificial = 0x20 // LOG_EVENT_ARTIFICIAL_F: made up by the sender, not in the file
	rowsStmtEnd    = 0x01 // STMT_END_F in a rows event's flags
)

// ErrCorrupt marks binlog bytes that do not parse or fail their checksum.
var ErrCorrupt = archive.Class(archive.ErrCorrupt, "corrupt binlog data")

// Event is one binlog event, kept as the exact bytes the server sent.
type Event struct {
	Type     replication.EventType
	When     uint32 // header timestamp, seconds
	ServerID uint32
	LogPos   uint32 // end offset in the server's file; 0 for artificial events
	Flags    uint16
	Raw      []byte // header, body and checksum
}

// Start is the event's offset in its file, from its end offset and size.
func (e Event) Start() uint32 { return e.LogPos - uint32(len(e.Raw)) }

// Artificial events (the fake rotate and format description sent on
// connect, heartbeats) describe the connection, not the binlog.
func (e Event) Artificial() bool {
	return e.Flags&flagArtificial != 0 || e.LogPos == 0 || isHeartbeat(e.Type)
}

func isHeartbeat(t replication.EventType) bool {
	return t == replication.HEARTBEAT_EVENT || t == replication.HEARTBEAT_LOG_EVENT_V2
}

// Time is the header time.
func (e Event) Time() time.Time { return time.Unix(int64(e.When), 0).UTC() }

// parseEvent decodes the header of one complete event held in raw.
func parseEvent(raw []byte) (Event, error) {
	if len(raw) < headerLen {
		return Event{}, fmt.Errorf("%w: event of %d bytes is shorter than its header", ErrCorrupt, len(raw))
	}
	size := binary.LittleEndian.Uint32(raw[9:])
	if int64(size) != int64(len(raw)) {
		return Event{}, fmt.Errorf("%w: event says %d bytes, has %d", ErrCorrupt, size, len(raw))
	}
	return Event{
		When:     binary.LittleEndian.Uint32(raw[0:]),
		Type:     replication.EventType(raw[4]),
		ServerID: binary.LittleEndian.Uint32(raw[5:]),
		LogPos:   binary.LittleEndian.Uint32(raw[13:]),
		Flags:    binary.LittleEndian.Uint16(raw[17:]),
		Raw:      raw,
	}, nil
}

// nextEvent splits the first event off data.
func nextEvent(data []byte) (Event, []byte, error) {
	if len(data) < headerLen {
		return Event{}, nil, fmt.Errorf("%w: %d trailing bytes are not an event", ErrCorrupt, len(data))
	}
	size := binary.LittleEndian.Uint32(data[9:])
	if size < headerLen || size > maxEvent || int64(size) > int64(len(data)) {
		return Event{}, nil, fmt.Errorf("%w: event size %d with %d bytes left", ErrCorrupt, size, len(data))
	}
	e, err := parseEvent(data[:size:size])
	return e, data[size:], err
}

// Format is what a format description event tells a reader of the events
// after it.
type Format struct {
	Raw           []byte // the format description event itself
	ServerVersion string
	Checksum      bool   // events end in a CRC32
	postHeader    []byte // post-header length per event type (index type-1)
}

// parseFormat decodes a format description event.
func parseFormat(e Event) (*Format, error) {
	if e.Type != replication.FORMAT_DESCRIPTION_EVENT {
		return nil, fmt.Errorf("%w: expected a format description event, got %s", ErrCorrupt, e.Type)
	}
	body := e.Raw[headerLen:]
	const fixed = 2 + 50 + 4 + 1
	if len(body) < fixed || binary.LittleEndian.Uint16(body) != 4 || body[56] != headerLen {
		return nil, fmt.Errorf("%w: format description is not binlog version 4", ErrCorrupt)
	}
	ver := string(bytes.TrimRight(body[2:52], "\x00"))
	f := &Format{Raw: e.Raw, ServerVersion: ver}
	rest := body[fixed:]
	if hasChecksumAlg(ver) {
		if len(rest) < 1+checksumLen {
			return nil, fmt.Errorf("%w: format description too short", ErrCorrupt)
		}
		alg := rest[len(rest)-1-checksumLen]
		switch alg {
		case 0:
		case 1:
			f.Checksum = true
			if err := verifyCRC(e.Raw); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w: unknown checksum algorithm %d", ErrCorrupt, alg)
		}
		rest = rest[:len(rest)-1-checksumLen]
	}
	f.postHeader = rest
	return f, nil
}

// hasChecksumAlg: servers since MySQL 5.6.1 and MariaDB 5.3 write the
// checksum algorithm at the end of the format description.
func hasChecksumAlg(version string) bool {
	nums := strings.SplitN(strings.SplitN(version, "-", 2)[0], ".", 3)
	v := [3]int{}
	for i := 0; i < len(nums) && i < 3; i++ {
		v[i], _ = strconv.Atoi(nums[i])
	}
	min := [3]int{5, 6, 1}
	if strings.Contains(strings.ToLower(version), "mariadb") {
		min = [3]int{5, 3, 0}
	}
	for i := range v {
		if v[i] != min[i] {
			return v[i] > min[i]
		}
	}
	return true
}

func verifyCRC(raw []byte) error {
	n := len(raw) - checksumLen
	if n < headerLen {
		return fmt.Errorf("%w: event too short for a checksum", ErrCorrupt)
	}
	if crc32.ChecksumIEEE(raw[:n]) != binary.LittleEndian.Uint32(raw[n:]) {
		return fmt.Errorf("%w: CRC32 mismatch in %s event ending at %d", ErrCorrupt,
			replication.EventType(raw[4]), binary.LittleEndian.Uint32(raw[13:]))
	}
	return nil
}

// Body returns an event's body without header and checksum, verifying the
// checksum when the format has one.
func (f *Format) Body(e Event) ([]byte, error) {
	if !f.Checksum {
		return e.Raw[headerLen:], nil
	}
	if err := verifyCRC(e.Raw); err != nil {
		return nil, err
	}
	return e.Raw[headerLen : len(e.Raw)-checksumLen], nil
}

func (f *Format) postHeaderLen(t replication.EventType) int {
	if int(t) < 1 || int(t) > len(f.postHeader) {
		return -1
	}
	return int(f.postHeader[t-1])
}

// RowsStmtEnd reports whether a rows event ends its statement (the table
// maps before it are then released).
func (f *Format) RowsStmtEnd(e Event, body []byte) bool {
	ph := f.postHeaderLen(e.Type)
	idLen := 6
	if ph == 6 {
		idLen = 4
	}
	if len(body) < idLen+2 {
		return true
	}
	return binary.LittleEndian.Uint16(body[idLen:])&rowsStmtEnd != 0
}

// Query is the part of a query event the archive and replay use.
type Query struct {
	ThreadID   uint32
	ErrorCode  uint16
	StatusVars []byte
	Schema     string
	SQL        string
}

func ParseQuery(body []byte) (Query, error) {
	const fixed = 4 + 4 + 1 + 2 + 2
	if len(body) < fixed {
		return Query{}, fmt.Errorf("%w: query event too short", ErrCorrupt)
	}
	q := Query{ThreadID: binary.LittleEndian.Uint32(body), ErrorCode: binary.LittleEndian.Uint16(body[9:])}
	schemaLen := int(body[8])
	varsLen := int(binary.LittleEndian.Uint16(body[11:]))
	rest := body[fixed:]
	if len(rest) < varsLen+schemaLen+1 {
		return Query{}, fmt.Errorf("%w: query event fields overrun it", ErrCorrupt)
	}
	q.StatusVars = rest[:varsLen]
	q.Schema = string(rest[varsLen : varsLen+schemaLen])
	q.SQL = string(rest[varsLen+schemaLen+1:])
	return q, nil
}

// gtidOf decodes a GTID event: MariaDB's domain-server-seq (with whether
// the group is a single statement without BEGIN) or MySQL's uuid:gno.
func gtidOf(e Event, body []byte) (gtid string, maria MariaGTID, standalone bool, err error) {
	switch e.Type {
	case replication.MARIADB_GTID_EVENT:
		if len(body) < 13 {
			return "", MariaGTID{}, false, fmt.Errorf("%w: MariaDB GTID event too short", ErrCorrupt)
		}
		g := MariaGTID{Seq: binary.LittleEndian.Uint64(body), Domain: binary.LittleEndian.Uint32(body[8:]), Server: e.ServerID}
		return g.String(), g, body[12]&replication.BINLOG_MARIADB_FL_STANDALONE != 0, nil
	case replication.GTID_EVENT, replication.ANONYMOUS_GTID_EVENT, replication.GTID_TAGGED_LOG_EVENT:
		if e.Type != replication.GTID_EVENT {
			return "", MariaGTID{}, false, nil // anonymous (or tagged, kept as opaque)
		}
		if len(body) < 25 {
			return "", MariaGTID{}, false, fmt.Errorf("%w: GTID event too short", ErrCorrupt)
		}
		u, _ := uuid.FromBytes(body[1:17])
		return fmt.Sprintf("%s:%d", u, int64(binary.LittleEndian.Uint64(body[17:]))), MariaGTID{}, false, nil
	}
	return "", MariaGTID{}, false, nil
}

// rotateOf decodes a rotate event: the next file and offset.
func rotateOf(body []byte) (string, uint32, error) {
	if len(body) < 9 {
		return "", 0, fmt.Errorf("%w: rotate event too short", ErrCorrupt)
	}
	pos := binary.LittleEndian.Uint64(body)
	name := string(body[8:])
	if err := validFile(name); err != nil || pos < 4 || pos > 1<<32-1 {
		return "", 0, fmt.Errorf("%w: rotate to %q at %d", ErrCorrupt, name, pos)
	}
	return name, uint32(pos), nil
}
