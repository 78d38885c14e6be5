package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
)

// A chunk index object lists chunks one writer session stored, so the next
// backup knows what the repository holds without listing every chunk.
//
// Payload (inside the object envelope): version byte 1, then records of
// 32-byte chunk id | u32 plaintext size | u32 stored size (little endian).
const (
	chunkIndexPrefix  = "index/"
	chunkIndexVersion = 1
	indexRecordLen    = 32 + 4 + 4
)

type indexEntry struct {
	id            ChunkID
	plain, stored uint32
}

func marshalChunkIndex(entries []indexEntry) []byte {
	b := make([]byte, 1, 1+len(entries)*indexRecordLen)
	b[0] = chunkIndexVersion
	for _, e := range entries {
		b = append(b, e.id[:]...)
		b = binary.LittleEndian.AppendUint32(b, e.plain)
		b = binary.LittleEndian.AppendUint32(b, e.stored)
	}
	return b
}

// ParseChunkIndex decodes a chunk index payload.
func parseChunkIndex(b []byte) ([]indexEntry, error) {
	if len(b) < 1 {
		return nil, fmt.Errorf("%w: empty chunk index", ErrCorrupt)
	}
	if b[0] != chunkIndexVersion {
		return nil, fmt.Errorf("%w: chunk index version %d", ErrUnsupported, b[0])
	}
	b = b[1:]
	if len(b)%indexRecordLen != 0 {
		return nil, fmt.Errorf("%w: chunk index length %d is not a whole number of records", ErrCorrupt, len(b))
	}
	out := make([]indexEntry, 0, len(b)/indexRecordLen)
	for ; len(b) > 0; b = b[indexRecordLen:] {
		var e indexEntry
		copy(e.id[:], b[:32])
		e.plain = binary.LittleEndian.Uint32(b[32:])
		e.stored = binary.LittleEndian.Uint32(b[36:])
		out = append(out, e)
	}
	return out, nil
}

func (r *Repository) writeChunkIndex(ctx context.Context, entries []indexEntry) error {
	var rnd [4]byte
	rand.Read(rnd[:])
	name := fmt.Sprintf("%s%016x-%s", chunkIndexPrefix, time.Now().UnixNano(), hex.EncodeToString(rnd[:]))
	_, err := r.Put(ctx, name, KindChunkIndex, bytes.NewReader(marshalChunkIndex(entries)))
	return err
}

// loadChunkIndex returns the set of chunks the index objects record.
func (r *Repository) loadChunkIndex(ctx context.Context) (map[ChunkID]struct{}, error) {
	known := make(map[ChunkID]struct{})
	var names []string
	err := r.store.List(ctx, chunkIndexPrefix, "", func(o ObjectInfo) error {
		names = append(names, o.Name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list chunk indexes: %w", err)
	}
	for _, name := range names {
		if err := r.readIDs(ctx, name, KindChunkIndex, known); err != nil {
			return nil, fmt.Errorf("load chunk index: %w", err)
		}
	}
	return known, nil
}

// readIDs adds the chunk ids of an index-format object (chunk index or
// refs) to set.
func (r *Repository) readIDs(ctx context.Context, name string, kind Kind, set map[ChunkID]struct{}) error {
	b, err := r.ReadAll(ctx, name, kind)
	if err != nil {
		return err
	}
	entries, err := parseChunkIndex(b)
	if err != nil {
		return fmt.Errorf("%s %s: %w", kind, name, err)
	}
	for _, e := range entries {
		set[e.id] = struct{}{}
	}
	return nil
}
