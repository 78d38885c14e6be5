package archive

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Packs gather many chunk objects into one store object (format version 2),
// as restic and kopia do: a 1 GiB relation file becomes a handful of
// objects instead of a thousand, which is one fsync (file store) or a few
// multipart PUTs (cloud stores) instead of one per chunk.
//
// A pack is a 12-byte header of kind pack (never compressed or encrypted
// itself), its members back to back — each a complete chunk object with its
// own envelope, compression, encryption and checksum — and a trailer that
// lists them, so an index can always be rebuilt from the packs alone:
//
//	count × (32-byte chunk id | u32 offset | u32 length | u32 plaintext size)
//	u32 count | u32 CRC32C of the entries and the count | "TDPK"
const (
	packPrefix       = "packs/"
	packTrailerMagic = "TDPK"
	packEntryLen     = 32 + 4 + 4 + 4
	packTailLen      = 4 + 4 + 4
	// packTarget is the size at which a pack is closed: big enough that
	// per-object costs vanish, small enough that expiring a backup frees
	// space at a useful grain and a pack uploads quickly.
	packTarget = 16 << 20
	packMax    = 1<<32 - 1 // offsets are u32
)

// packID names a pack: 16 random bytes.
type packID [16]byte

func (p packID) String() string { return hex.EncodeToString(p[:]) }

func (p packID) name() string {
	h := p.String()
	return packPrefix + h[:2] + "/" + h
}

func parsePackName(name string) (packID, error) {
	var p packID
	if len(name) != len(packPrefix)+3+32 || name[:len(packPrefix)] != packPrefix {
		return p, fmt.Errorf("%w: unexpected object %s among packs", ErrCorrupt, name)
	}
	b, err := hex.DecodeString(name[len(name)-32:])
	if err == nil {
		copy(p[:], b)
	}
	if err != nil || p.name() != name {
		return p, fmt.Errorf("%w: unexpected object %s among packs", ErrCorrupt, name)
	}
	return p, nil
}

// packEntry locates one member of a pack.
type packEntry struct {
	id          ChunkID
	off, length uint32
	plain       uint32
}

func marshalPackTrailer(entries []packEntry) []byte {
	b := make([]byte, 0, len(entries)*packEntryLen+packTailLen)
	for _, e := range entries {
		b = append(b, e.id[:]...)
		b = binary.LittleEndian.AppendUint32(b, e.off)
		b = binary.LittleEndian.AppendUint32(b, e.length)
		b = binary.LittleEndian.AppendUint32(b, e.plain)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(entries)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return append(b, packTrailerMagic...)
}

// parsePackTrailer decodes the trailer at the end of a pack of size bytes;
// tail holds at least the trailer (the last bytes of the pack). Members must
// lie between the header and the trailer, in order, without overlap.
func parsePackTrailer(tail []byte, size int64) ([]packEntry, error) {
	if len(tail) < packTailLen || int64(len(tail)) > size {
		return nil, fmt.Errorf("%w: pack trailer truncated", ErrCorrupt)
	}
	end := tail[len(tail)-packTailLen:]
	if string(end[8:]) != packTrailerMagic {
		return nil, fmt.Errorf("%w: pack trailer magic missing", ErrCorrupt)
	}
	n := int64(binary.LittleEndian.Uint32(end[:4]))
	tlen := n*packEntryLen + packTailLen
	if tlen > int64(len(tail)) || tlen+headerLen > size {
		return nil, fmt.Errorf("%w: pack trailer of %d entries does not fit", ErrCorrupt, n)
	}
	t := tail[int64(len(tail))-tlen:]
	if crc32.Checksum(t[:len(t)-8], castagnoli) != binary.LittleEndian.Uint32(end[4:8]) {
		return nil, fmt.Errorf("%w: pack trailer checksum mismatch", ErrCorrupt)
	}
	entries := make([]packEntry, n)
	next := int64(headerLen)
	for i := range entries {
		r := t[i*packEntryLen:]
		e := &entries[i]
		copy(e.id[:], r[:32])
		e.off = binary.LittleEndian.Uint32(r[32:])
		e.length = binary.LittleEndian.Uint32(r[36:])
		e.plain = binary.LittleEndian.Uint32(r[40:])
		if int64(e.off) < next || e.length == 0 || int64(e.off)+int64(e.length) > size-tlen {
			return nil, fmt.Errorf("%w: pack member %d at %d+%d out of place", ErrCorrupt, i, e.off, e.length)
		}
		next = int64(e.off) + int64(e.length)
	}
	return entries, nil
}

var errPackUploadEnded = errors.New("pack upload ended")

// packWriter streams one pack into the store as members are added; the
// pack is durable (and its members may be indexed) only once close returns.
type packWriter struct {
	id      packID
	pw      *io.PipeWriter
	bw      *bufio.Writer // batches the many small writes of sealing into the pipe
	size    int64
	entries []packEntry
	done    chan error
	scratch []byte // compressor output, reused member to member
}

// newPackWriter starts a pack; spare, when not nil, is a closed pack whose
// buffers are reused.
func (r *Repository) newPackWriter(ctx context.Context, spare *packWriter) (*packWriter, error) {
	p := &packWriter{done: make(chan error, 1)}
	rand.Read(p.id[:])
	pr, pw := io.Pipe()
	p.pw = pw
	if spare != nil {
		p.bw, p.scratch = spare.bw, spare.scratch
		p.bw.Reset(pw)
	} else {
		p.bw = bufio.NewWriterSize(pw, 1<<20)
	}
	go func() {
		err := r.store.Put(ctx, p.id.name(), pr, -1)
		// Unblocks the writer if Put stopped reading early.
		pr.CloseWithError(cmp.Or(err, errPackUploadEnded))
		p.done <- err
	}()
	h := objectHeader{version: ObjectVersion, kind: uint8(KindPack)}
	hb := h.marshal()
	if err := p.write(hb[:]); err != nil {
		p.abort(err) // ends the upload goroutine too
		return nil, err
	}
	return p, nil
}

func (p *packWriter) write(b []byte) error {
	n, err := p.bw.Write(b)
	p.size += int64(n)
	if err != nil {
		return fmt.Errorf("write pack %s: %w", p.id.name(), err)
	}
	return nil
}

// seal appends data as one chunk object sealed by c (whose SHA-256 is sum)
// and returns the object's size.
func (p *packWriter) seal(c *Codec, id ChunkID, data []byte, sum [32]byte) (int64, error) {
	if p.size > packMax-(16<<20)-int64(len(data)) {
		return 0, fmt.Errorf("write pack %s: full", p.id.name())
	}
	off := p.size
	cw := &countingWriter{w: p.bw}
	var err error
	p.scratch, err = c.sealWhole(cw, KindChunk, data, sum, p.scratch)
	p.size += cw.n
	if err != nil {
		return 0, fmt.Errorf("write chunk %s to pack %s: %w", id, p.id.name(), err)
	}
	p.entries = append(p.entries, packEntry{id: id, off: uint32(off), length: uint32(cw.n), plain: uint32(len(data))})
	return cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// close writes the trailer and waits until the store holds the pack.
func (p *packWriter) close() error {
	err := p.write(marshalPackTrailer(p.entries))
	if err == nil {
		err = p.bw.Flush()
	}
	if err != nil {
		p.abort(err)
		return fmt.Errorf("write pack %s: %w", p.id.name(), err)
	}
	p.pw.Close()
	if err := <-p.done; err != nil {
		return fmt.Errorf("store pack %s: %w", p.id.name(), err)
	}
	return nil
}

// abort ends the upload without a pack: the store keeps nothing.
func (p *packWriter) abort(err error) {
	p.pw.CloseWithError(err)
	<-p.done
}
