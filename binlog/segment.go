package binlog

import (
	"fmt"

	"github.com/go-mysql-org/go-mysql/replication"
)

// A segment is a valid binlog file fragment on its own: the magic, the
// format description event of the server's file it belongs to, then events
// exactly as the server sent them (docs/format.md, "Binlog segments"). The
// format description at offset 4 of a file is only ever stored as that
// header, never again as data.

// segmentHeader is what every segment of a file starts with.
func segmentHeader(fde []byte) []byte {
	h := make([]byte, 0, len(fileMagic)+len(fde))
	return append(append(h, fileMagic...), fde...)
}

// Segment is a decoded segment: its format and its events.
type Segment struct {
	Format *Format
	Events []Event
}

// ParseSegment splits a segment's bytes into its format and events,
// verifying every event's checksum. The events alias data.
func ParseSegment(data []byte) (*Segment, error) {
	if len(data) < len(fileMagic) || string(data[:len(fileMagic)]) != string(fileMagic) {
		return nil, fmt.Errorf("%w: segment does not start with the binlog magic", ErrCorrupt)
	}
	fde, rest, err := nextEvent(data[len(fileMagic):])
	if err != nil {
		return nil, fmt.Errorf("segment header: %w", err)
	}
	f, err := parseFormat(fde)
	if err != nil {
		return nil, fmt.Errorf("segment header: %w", err)
	}
	s := &Segment{Format: f}
	for len(rest) > 0 {
		var e Event
		e, rest, err = nextEvent(rest)
		if err != nil {
			return nil, fmt.Errorf("segment event %d: %w", len(s.Events), err)
		}
		if e.Type == replication.FORMAT_DESCRIPTION_EVENT {
			return nil, fmt.Errorf("%w: a format description inside a segment", ErrCorrupt)
		}
		if f.Checksum {
			if err := verifyCRC(e.Raw); err != nil {
				return nil, err
			}
		}
		s.Events = append(s.Events, e)
	}
	return s, nil
}
