package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// A chunk index object lists chunks one writer session stored, so the next
// backup knows what the repository holds without listing every chunk, and
// a reader knows where each chunk lives.
//
// Payload (inside the object envelope), little endian:
//
//	version 1 (format 1 repositories, and refs objects):
//	  records of 32-byte chunk id | u32 plaintext size | u32 stored size
//	version 2 (chunk indexes of format 2 repositories):
//	  records of 32-byte chunk id | 16-byte pack id | u32 offset |
//	  u32 length | u32 plaintext size
const (
	chunkIndexPrefix = "index/"
	indexRecordLenV1 = 32 + 4 + 4
	indexRecordLenV2 = 32 + 16 + 4 + 4 + 4
)

// indexEntry is one chunk: its id, size and, in format 2, where it lives.
// A zero pack means a format 1 chunk, an object of its own.
type indexEntry struct {
	id            ChunkID
	pack          packID
	off, length   uint32
	plain, stored uint32
}

// marshalRefs writes the version 1 layout: ids and sizes only.
func marshalRefs(entries []indexEntry) []byte {
	b := make([]byte, 1, 1+len(entries)*indexRecordLenV1)
	b[0] = 1
	for _, e := range entries {
		b = append(b, e.id[:]...)
		b = binary.LittleEndian.AppendUint32(b, e.plain)
		b = binary.LittleEndian.AppendUint32(b, e.stored)
	}
	return b
}

func marshalChunkIndex(entries []indexEntry) []byte {
	b := make([]byte, 1, 1+len(entries)*indexRecordLenV2)
	b[0] = 2
	for _, e := range entries {
		b = append(b, e.id[:]...)
		b = append(b, e.pack[:]...)
		b = binary.LittleEndian.AppendUint32(b, e.off)
		b = binary.LittleEndian.AppendUint32(b, e.length)
		b = binary.LittleEndian.AppendUint32(b, e.plain)
	}
	return b
}

// parseChunkIndex decodes a chunk index or refs payload of either version.
func parseChunkIndex(b []byte) ([]indexEntry, error) {
	if len(b) < 1 {
		return nil, fmt.Errorf("%w: empty chunk index", ErrCorrupt)
	}
	var recLen int
	switch b[0] {
	case 1:
		recLen = indexRecordLenV1
	case 2:
		recLen = indexRecordLenV2
	default:
		return nil, fmt.Errorf("%w: chunk index version %d", ErrUnsupported, b[0])
	}
	v := b[0]
	b = b[1:]
	if len(b)%recLen != 0 {
		return nil, fmt.Errorf("%w: chunk index length %d is not a whole number of records", ErrCorrupt, len(b))
	}
	out := make([]indexEntry, 0, len(b)/recLen)
	for ; len(b) > 0; b = b[recLen:] {
		var e indexEntry
		copy(e.id[:], b[:32])
		if v == 1 {
			e.plain = binary.LittleEndian.Uint32(b[32:])
			e.stored = binary.LittleEndian.Uint32(b[36:])
		} else {
			copy(e.pack[:], b[32:48])
			e.off = binary.LittleEndian.Uint32(b[48:])
			e.length = binary.LittleEndian.Uint32(b[52:])
			e.plain = binary.LittleEndian.Uint32(b[56:])
			e.stored = e.length
			if e.pack == (packID{}) || e.length == 0 {
				return nil, fmt.Errorf("%w: chunk index entry %s has no location", ErrCorrupt, e.id)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

func (r *Repository) writeChunkIndex(ctx context.Context, entries []indexEntry) error {
	var rnd [4]byte
	rand.Read(rnd[:])
	name := fmt.Sprintf("%s%016x-%s", chunkIndexPrefix, time.Now().UnixNano(), hex.EncodeToString(rnd[:]))
	b := marshalChunkIndex(entries)
	if r.cfg.Version == 1 {
		b = marshalRefs(entries) // format 1 chunks have no location
	}
	_, err := r.Put(ctx, name, KindChunkIndex, bytes.NewReader(b))
	return err
}

// loadChunkIndex returns the chunks the index objects record, by id. An
// index object that does not read back (corrupt, an unknown version) is
// passed over: the index is derived data, its chunks are found from their
// packs' trailers (scanUnindexed), and verify names the object.
func (r *Repository) loadChunkIndex(ctx context.Context) (map[ChunkID]indexEntry, error) {
	known := make(map[ChunkID]indexEntry)
	var names []string
	err := r.store.List(ctx, chunkIndexPrefix, "", func(o ObjectInfo) error {
		names = append(names, o.Name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list chunk indexes: %w", err)
	}
	for _, name := range names {
		es, err := r.readIndex(ctx, name, KindChunkIndex)
		if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnsupported) || errors.Is(err, ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("load chunk index: %w", err)
		}
		for _, e := range es {
			if _, dup := known[e.id]; !dup {
				known[e.id] = e
			}
		}
	}
	return known, nil
}

// readIDs adds the chunk ids of an index-format object (chunk index or
// refs) to set.
func (r *Repository) readIDs(ctx context.Context, name string, kind Kind, set map[ChunkID]struct{}) error {
	entries, err := r.readIndex(ctx, name, kind)
	if err != nil {
		return err
	}
	for _, e := range entries {
		set[e.id] = struct{}{}
	}
	return nil
}

func (r *Repository) readIndex(ctx context.Context, name string, kind Kind) ([]indexEntry, error) {
	b, err := r.ReadAll(ctx, name, kind)
	if err != nil {
		return nil, err
	}
	entries, err := parseChunkIndex(b)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", kind, name, err)
	}
	return entries, nil
}
