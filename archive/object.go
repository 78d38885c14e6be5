package archive

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// The object format (docs/format.md has the full specification):
//
//	header  "TDMK" | version | kind | compression | encryption | CRC32C(header[0:8])
//	body    frames, encrypted as one age stream when encryption is on:
//	        'H' header[0:8]                      (binds the header to the
//	                                              authenticated payload)
//	        'D' u32 len | len bytes              (compressed data, repeated)
//	        'E' u64 plainLen | sha256 | CRC32C   (end: plaintext length and hash)
//
// Every object therefore carries its own checksum of the plaintext, detected
// on read even when encryption is off, and a reader returns io.EOF only after
// the end frame verified and nothing trails it.

const (
	objectMagic   = "TDMK"
	ObjectVersion = 1 // current object format version
	headerLen     = 12
	maxFrameLen   = 4 << 20 // refuse larger frames: bounds memory on hostile input
	writeFrameLen = 256 << 10

	frameHeader = 'H'
	frameData   = 'D'
	frameEnd    = 'E'
)

// Kind says what an object is; a reader names the kind it expects and
// refuses anything else, so one object can never be mistaken for another.
type Kind uint8

const (
	KindConfig       Kind = 1  // repository config (never encrypted)
	KindKey          Kind = 2  // passphrase-wrapped repository identity
	KindChunk        Kind = 3  // content-addressed chunk of a base backup
	KindChunkIndex   Kind = 4  // list of chunks a writer session stored
	KindManifest     Kind = 5  // base backup manifest (commit point)
	KindSegment      Kind = 6  // stream segment: WAL, binlog or oplog
	KindSegmentIndex Kind = 7  // index of stream segments
	KindReport       Kind = 8  // verify / drill reports
	KindBlob         Kind = 9  // opaque payload (tests, benchmarks, misc)
	KindSource       Kind = 10 // the database cluster a repository is bound to
	KindRefs         Kind = 11 // chunk ids one manifest references
	KindGap          Kind = 12 // a stream's record of a gap it found
	KindLock         Kind = 13 // one generation of a repository lock lease
	KindCatalog      Kind = 14 // unencrypted summary of one backup
	KindPack         Kind = 15 // container of chunk objects (format version 2)
	KindHeartbeat    Kind = 16 // a streamer's liveness and state
	KindOperation    Kind = 17 // a running operation and its progress
)

// plaintextAllowed reports whether objects of kind are stored unencrypted
// even in an encrypted repository: bookkeeping a backup host (which holds
// only public keys) must read back, holding no user data.
func (k Kind) plaintextAllowed() bool {
	return k == KindConfig || k == KindChunkIndex || k == KindSource || k == KindRefs || k == KindGap || k == KindSegmentIndex || k == KindLock || k == KindCatalog || k == KindReport ||
		k == KindHeartbeat || k == KindOperation
}

func (k Kind) String() string {
	names := map[Kind]string{KindConfig: "config", KindKey: "key", KindChunk: "chunk",
		KindChunkIndex: "chunk index", KindManifest: "manifest", KindSegment: "segment",
		KindSegmentIndex: "segment index", KindReport: "report", KindBlob: "blob", KindSource: "source", KindRefs: "refs", KindGap: "gap record", KindLock: "lock", KindCatalog: "catalog entry", KindPack: "pack",
		KindHeartbeat: "heartbeat", KindOperation: "operation"}
	if n, ok := names[k]; ok {
		return n
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Compression codecs.
const (
	CompressNone uint8 = 0
	CompressZstd uint8 = 1
)

// Encryption schemes.
const (
	EncryptNone uint8 = 0
	EncryptAge  uint8 = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt marks an object whose bytes do not match what was written:
// checksum mismatch, truncation, bad framing.
var ErrCorrupt = errors.New("object corrupt")

// ErrUnsupported marks an object written in a format this build cannot read.
var ErrUnsupported = errors.New("unsupported object format")

type objectHeader struct {
	version, kind, compression, encryption uint8
}

func (h objectHeader) marshal() [headerLen]byte {
	var b [headerLen]byte
	copy(b[:4], objectMagic)
	b[4], b[5], b[6], b[7] = h.version, h.kind, h.compression, h.encryption
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b[:8], castagnoli))
	return b
}

func parseHeader(b []byte) (objectHeader, error) {
	if len(b) < headerLen {
		return objectHeader{}, fmt.Errorf("%w: truncated header", ErrCorrupt)
	}
	if string(b[:4]) != objectMagic {
		return objectHeader{}, fmt.Errorf("%w: not a Tidemark object (bad magic %q)", ErrCorrupt, b[:4])
	}
	if crc32.Checksum(b[:8], castagnoli) != binary.LittleEndian.Uint32(b[8:12]) {
		return objectHeader{}, fmt.Errorf("%w: header checksum mismatch", ErrCorrupt)
	}
	h := objectHeader{version: b[4], kind: b[5], compression: b[6], encryption: b[7]}
	if h.version != ObjectVersion {
		return h, fmt.Errorf("%w: object format version %d (this build reads version %d; a newer Tidemark wrote it?)", ErrUnsupported, h.version, ObjectVersion)
	}
	if h.compression > CompressZstd {
		return h, fmt.Errorf("%w: compression codec %d", ErrUnsupported, h.compression)
	}
	if h.encryption > EncryptAge {
		return h, fmt.Errorf("%w: encryption scheme %d", ErrUnsupported, h.encryption)
	}
	return h, nil
}

// frameWriter cuts a byte stream into 'D' frames and ends it with 'E'.
type frameWriter struct {
	w   io.Writer
	buf []byte
	err error
}

func newFrameWriter(w io.Writer, header []byte) (*frameWriter, error) {
	fw := &frameWriter{w: w}
	if _, err := w.Write(append([]byte{frameHeader}, header...)); err != nil {
		return nil, err
	}
	return fw, nil
}

func (fw *frameWriter) Write(p []byte) (int, error) {
	if fw.err != nil {
		return 0, fw.err
	}
	n := len(p)
	for len(p) > 0 {
		if fw.buf == nil {
			fw.buf = make([]byte, 0, writeFrameLen) // only objects written piecemeal need it
		}
		k := copy(fw.buf[len(fw.buf):cap(fw.buf)], p)
		fw.buf = fw.buf[:len(fw.buf)+k]
		p = p[k:]
		if len(fw.buf) == cap(fw.buf) {
			if err := fw.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// writeAll writes p as whole frames straight from p, without buffering:
// for a writer given its entire payload at once (and nothing buffered).
func (fw *frameWriter) writeAll(p []byte) error {
	for len(p) > 0 {
		k := min(len(p), writeFrameLen)
		if err := fw.frame(p[:k]); err != nil {
			return err
		}
		p = p[k:]
	}
	return nil
}

func (fw *frameWriter) flush() error {
	if len(fw.buf) == 0 {
		return nil
	}
	if err := fw.frame(fw.buf); err != nil {
		return err
	}
	fw.buf = fw.buf[:0]
	return nil
}

func (fw *frameWriter) frame(b []byte) error {
	if fw.err != nil {
		return fw.err
	}
	var hdr [5]byte
	hdr[0] = frameData
	binary.LittleEndian.PutUint32(hdr[1:], uint32(len(b)))
	if _, err := fw.w.Write(hdr[:]); err != nil {
		fw.err = err
		return err
	}
	if _, err := fw.w.Write(b); err != nil {
		fw.err = err
		return err
	}
	return nil
}

func (fw *frameWriter) end(plainLen uint64, sum []byte) error {
	if err := fw.flush(); err != nil {
		return err
	}
	e := make([]byte, 0, 1+8+32+4)
	e = append(e, frameEnd)
	e = binary.LittleEndian.AppendUint64(e, plainLen)
	e = append(e, sum...)
	e = binary.LittleEndian.AppendUint32(e, crc32.Checksum(e, castagnoli))
	_, err := fw.w.Write(e)
	return err
}

// frameReader yields the payload of 'D' frames and stops at 'E', keeping
// the end frame's values for verification.
type frameReader struct {
	r        *bufio.Reader
	left     int // bytes left in the current data frame
	ended    bool
	plainLen uint64
	sum      [32]byte
}

func newFrameReader(r io.Reader, header []byte) (*frameReader, error) {
	fr := &frameReader{r: bufio.NewReaderSize(r, 64<<10)}
	var h [9]byte
	if _, err := io.ReadFull(fr.r, h[:]); err != nil {
		return nil, fmt.Errorf("%w: reading header frame: %v", ErrCorrupt, err)
	}
	if h[0] != frameHeader || !bytes.Equal(h[1:], header) {
		return nil, fmt.Errorf("%w: header frame does not match the header", ErrCorrupt)
	}
	return fr, nil
}

func (fr *frameReader) Read(p []byte) (int, error) {
	for fr.left == 0 {
		if fr.ended {
			return 0, io.EOF
		}
		if err := fr.next(); err != nil {
			return 0, err
		}
	}
	if len(p) > fr.left {
		p = p[:fr.left]
	}
	n, err := fr.r.Read(p)
	fr.left -= n
	if err == io.EOF {
		err = fmt.Errorf("%w: truncated in a data frame", ErrCorrupt)
	}
	return n, err
}

func (fr *frameReader) next() error {
	t, err := fr.r.ReadByte()
	if err != nil {
		return fmt.Errorf("%w: truncated before end frame", ErrCorrupt)
	}
	switch t {
	case frameData:
		var l [4]byte
		if _, err := io.ReadFull(fr.r, l[:]); err != nil {
			return fmt.Errorf("%w: truncated frame length", ErrCorrupt)
		}
		n := binary.LittleEndian.Uint32(l[:])
		if n == 0 || n > maxFrameLen {
			return fmt.Errorf("%w: bad frame length %d", ErrCorrupt, n)
		}
		fr.left = int(n)
		return nil
	case frameEnd:
		var e [1 + 8 + 32 + 4]byte
		e[0] = frameEnd
		if _, err := io.ReadFull(fr.r, e[1:]); err != nil {
			return fmt.Errorf("%w: truncated end frame", ErrCorrupt)
		}
		if crc32.Checksum(e[:41], castagnoli) != binary.LittleEndian.Uint32(e[41:]) {
			return fmt.Errorf("%w: end frame checksum mismatch", ErrCorrupt)
		}
		fr.plainLen = binary.LittleEndian.Uint64(e[1:9])
		copy(fr.sum[:], e[9:41])
		fr.ended = true
		// Nothing may follow the end frame.
		if _, err := fr.r.ReadByte(); err != io.EOF {
			if err == nil {
				return fmt.Errorf("%w: data after end frame", ErrCorrupt)
			}
			return fmt.Errorf("%w: after end frame: %v", ErrCorrupt, err)
		}
		return nil
	default:
		return fmt.Errorf("%w: unknown frame type 0x%02x", ErrCorrupt, t)
	}
}

// verifyingReader hashes plaintext as it is read and, at EOF, checks it
// against the end frame; only then does it return io.EOF.
type verifyingReader struct {
	r      io.Reader
	frames *frameReader
	h      hash.Hash
	n      uint64
	done   bool
	sum    [32]byte // set once verified
}

func newVerifyingReader(r io.Reader, frames *frameReader) *verifyingReader {
	return &verifyingReader{r: r, frames: frames, h: sha256.New()}
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.done {
		return 0, io.EOF
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += uint64(n)
	if err == io.EOF {
		if verr := v.verify(); verr != nil {
			return n, verr
		}
		v.done = true
	}
	return n, err
}

func (v *verifyingReader) verify() error {
	// The decompressor may stop before consuming the end frame: drain it.
	if !v.frames.ended {
		if extra, err := io.Copy(io.Discard, v.frames); err != nil {
			return err
		} else if extra > 0 {
			return fmt.Errorf("%w: %d bytes after the compressed stream", ErrCorrupt, extra)
		}
	}
	if v.n != v.frames.plainLen {
		return fmt.Errorf("%w: %d bytes of data, end frame says %d", ErrCorrupt, v.n, v.frames.plainLen)
	}
	if !bytes.Equal(v.h.Sum(nil), v.frames.sum[:]) {
		return fmt.Errorf("%w: SHA-256 of data does not match the end frame", ErrCorrupt)
	}
	v.sum = v.frames.sum
	return nil
}
