package oplog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// A segment's data (inside the repository's encrypted, compressed segment
// object) is a version header followed by oplog entries as the server wrote
// them, each a complete BSON document, in the order they were read. Entries
// are normally in timestamp order; on FerretDB a late entry may follow a
// later one and an entry may repeat (re-read after a restart), so readers
// order and de-duplicate (see Replay order in restore). A consolidated
// segment is its small segments concatenated, so the header may recur
// between entries; its first four bytes read as a length far above any
// entry's, so it cannot be mistaken for one.
var segmentMagic = []byte("TMOPLOG\x01")

// maxEntry bounds one entry: MongoDB caps documents at 16 MiB and oplog
// entries slightly above that.
const maxEntry = 17 << 20

// SegmentHeader starts every segment's data.
func SegmentHeader() []byte { return bytes.Clone(segmentMagic) }

// SegmentReader yields a segment's entries.
type SegmentReader struct {
	r      io.Reader
	header bool
}

// NewSegmentReader reads the entries of one segment's data.
func NewSegmentReader(r io.Reader) *SegmentReader { return &SegmentReader{r: r} }

// Next returns the next entry, or io.EOF after the last.
func (s *SegmentReader) Next() (Entry, error) {
	if !s.header {
		var h [8]byte
		if _, err := io.ReadFull(s.r, h[:]); err != nil {
			return Entry{}, fmt.Errorf("oplog segment header: %w", unexpected(err))
		}
		if !bytes.Equal(h[:], segmentMagic) {
			return Entry{}, fmt.Errorf("oplog segment header %q: %w (unknown format or version)", h[:], ErrBadEntry)
		}
		s.header = true
	}
	var l [4]byte
	if _, err := io.ReadFull(s.r, l[:]); err != nil {
		if err == io.EOF {
			return Entry{}, io.EOF
		}
		return Entry{}, fmt.Errorf("oplog segment entry length: %w", unexpected(err))
	}
	if bytes.Equal(l[:], segmentMagic[:4]) {
		var rest [4]byte
		if _, err := io.ReadFull(s.r, rest[:]); err != nil || !bytes.Equal(rest[:], segmentMagic[4:]) {
			return Entry{}, fmt.Errorf("oplog segment: %w: damaged header between entries", ErrBadEntry)
		}
		return s.Next()
	}
	n := binary.LittleEndian.Uint32(l[:])
	if n < 5 || n > maxEntry {
		return Entry{}, fmt.Errorf("%w: entry of %d bytes", ErrBadEntry, n)
	}
	raw := make([]byte, n)
	copy(raw, l[:])
	if _, err := io.ReadFull(s.r, raw[4:]); err != nil {
		return Entry{}, fmt.Errorf("oplog segment entry: %w", unexpected(err))
	}
	return ParseEntry(bson.Raw(raw))
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
