package archive

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
)

// Codec seals and opens objects for one repository: compression level,
// the age recipients objects are encrypted to, and the identities (if this
// host has them) that open them. A backup host needs only recipients.
type Codec struct {
	compression uint8
	level       zstd.EncoderLevel
	concurrency int
	recipients  []age.Recipient
	identities  []age.Identity
	// identitiesChecked: the identities are known to open this repository
	// (checked against its recipients at Open).
	identitiesChecked bool

	encoders sync.Pool
	decoders sync.Pool
}

// CodecOptions configure a Codec.
type CodecOptions struct {
	Compression uint8 // CompressNone or CompressZstd
	Level       int   // zstd level 1 (fastest) .. 4 (best); 0 = default (1)
	Concurrency int   // zstd encoder goroutines per object; 0 = GOMAXPROCS
	Recipients  []age.Recipient
	Identities  []age.Identity
	// IdentitiesChecked says the identities were verified against the
	// repository's recipients, so a failure to open an object is corruption.
	IdentitiesChecked bool
}

// NewCodec builds a Codec.
func NewCodec(o CodecOptions) (*Codec, error) {
	if o.Compression > CompressZstd {
		return nil, fmt.Errorf("unknown compression codec %d", o.Compression)
	}
	if o.Level == 0 {
		// Level 1 stores about what C zstd -1 does (0.79–1.04× on the
		// bench's compress suite); level 2 stores 4–16% less of WAL,
		// binlogs and BSON for 1.1–3.7× the CPU (docs/compression.md).
		o.Level = int(zstd.SpeedFastest)
	}
	if o.Level < 1 || o.Level > 4 {
		return nil, fmt.Errorf("zstd level %d out of range 1..4", o.Level)
	}
	if o.Concurrency <= 0 {
		o.Concurrency = runtime.GOMAXPROCS(0)
	}
	return &Codec{compression: o.Compression, level: zstd.EncoderLevel(o.Level),
		concurrency: o.Concurrency, recipients: o.Recipients, identities: o.Identities,
		identitiesChecked: o.IdentitiesChecked}, nil
}

// Encrypted reports whether objects are sealed with age.
func (c *Codec) Encrypted() bool { return len(c.recipients) > 0 }

// CanDecrypt reports whether this codec holds an identity to open objects.
func (c *Codec) CanDecrypt() bool { return len(c.identities) > 0 }

// ObjectWriter seals one object. Write plaintext, then Close; Close must be
// called for the object to be complete, and its error checked.
type ObjectWriter struct {
	codec   *Codec
	enc     io.WriteCloser // age stream, or nil
	frames  *frameWriter
	zw      *zstd.Encoder // nil when uncompressed
	h       hash.Hash     // nil when the caller supplied sum
	sum     [32]byte
	n       uint64
	closed  bool
	release func()
}

// NewWriter starts an object of the given kind, written to w.
func (c *Codec) NewWriter(w io.Writer, kind Kind) (*ObjectWriter, error) {
	return c.newWriter(w, kind, true)
}

func (c *Codec) newWriter(w io.Writer, kind Kind, stream bool) (*ObjectWriter, error) {
	h := objectHeader{version: ObjectVersion, kind: uint8(kind), compression: c.compression}
	if c.Encrypted() && kind.plaintextAllowed() {
		return nil, fmt.Errorf("%s objects are bookkeeping, stored unencrypted: use the repository's metadata codec", kind)
	}
	if c.Encrypted() {
		h.encryption = EncryptAge
	}
	hb := h.marshal()
	if _, err := w.Write(hb[:]); err != nil {
		return nil, err
	}
	ow := &ObjectWriter{codec: c, h: sha256.New()}
	body := w
	if c.Encrypted() {
		enc, err := age.Encrypt(w, c.recipients...)
		if err != nil {
			return nil, fmt.Errorf("start encryption: %w", err)
		}
		ow.enc, body = enc, enc
	}
	fw, err := newFrameWriter(body, hb[:8])
	if err != nil {
		return nil, err
	}
	ow.frames = fw
	if c.compression == CompressZstd && stream {
		zw := c.encoder()
		zw.Reset(fw)
		ow.zw = zw
		ow.release = func() { c.encoders.Put(zw) }
	}
	return ow, nil
}

func (c *Codec) encoder() *zstd.Encoder {
	if zw, ok := c.encoders.Get().(*zstd.Encoder); ok {
		return zw
	}
	// No zstd content checksum: every object's end frame already carries
	// the plaintext's SHA-256, which readers check.
	opts := []zstd.EOption{zstd.WithEncoderLevel(c.level), zstd.WithEncoderConcurrency(c.concurrency), zstd.WithEncoderCRC(false),
		// Entropy-code the literals of blocks where matches save (almost)
		// nothing. Below SpeedBetterCompression klauspost stores such blocks
		// raw, so md5 hex text or sysbench's digit groups were stored at
		// 1.00:1 where C zstd -1 makes 1.7–2:1; with this, level 1 stores
		// them as small as zstd -1 does (docs/compression.md). Incompressible
		// blocks cost one more histogram pass.
		zstd.WithAllLitEntropyCompression(true)}
	if c.concurrency == 1 {
		// Chunk codecs run one encoder per worker on objects of a few MiB:
		// a small window loses nothing there and keeps memory per worker low.
		opts = append(opts, zstd.WithWindowSize(2<<20), zstd.WithLowerEncoderMem(true))
	}
	zw, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		panic(fmt.Sprintf("zstd encoder with validated options: %v", err)) // options validated in NewCodec
	}
	return zw
}

// sealWhole writes data, whose SHA-256 the caller already computed from
// the same buffer, as one complete object: compressed in a single call
// (no streaming copies) and without hashing the bytes again.
func (c *Codec) sealWhole(w io.Writer, kind Kind, data []byte, sum [32]byte, scratch []byte) ([]byte, error) {
	ow, err := c.newWriter(w, kind, false)
	if err != nil {
		return scratch, err
	}
	ow.h, ow.sum, ow.n = nil, sum, uint64(len(data))
	body := data
	if c.compression == CompressZstd {
		zw := c.encoder()
		scratch = zw.EncodeAll(data, scratch[:0])
		c.encoders.Put(zw)
		body = scratch
	}
	if err := ow.frames.writeAll(body); err != nil {
		return scratch, err
	}
	return scratch, ow.Close()
}

// Write implements io.Writer.
func (ow *ObjectWriter) Write(p []byte) (int, error) {
	if ow.closed {
		return 0, errors.New("write to closed object")
	}
	if ow.h != nil {
		ow.h.Write(p)
	}
	ow.n += uint64(len(p))
	if ow.zw != nil {
		return ow.zw.Write(p)
	}
	return ow.frames.Write(p)
}

// Close finishes compression, writes the end frame and seals encryption.
func (ow *ObjectWriter) Close() error {
	if ow.closed {
		return nil
	}
	ow.closed = true
	if ow.zw != nil {
		err := ow.zw.Close()
		ow.zw.Reset(nil) // drop the reference to the destination before pooling
		ow.release()
		if err != nil {
			return fmt.Errorf("compress: %w", err)
		}
	}
	if ow.h != nil {
		copy(ow.sum[:], ow.h.Sum(nil))
	}
	if err := ow.frames.end(ow.n, ow.sum[:]); err != nil {
		return err
	}
	if ow.enc != nil {
		if err := ow.enc.Close(); err != nil {
			return fmt.Errorf("seal encryption: %w", err)
		}
	}
	return nil
}

// Sum returns the SHA-256 of the plaintext written, valid after Close.
func (ow *ObjectWriter) Sum() [32]byte { return ow.sum }

// Len returns the plaintext length written.
func (ow *ObjectWriter) Len() uint64 { return ow.n }

// ObjectReader opens one object. It returns io.EOF only once the whole
// object verified; any corruption surfaces as an error wrapping ErrCorrupt.
type ObjectReader struct {
	r       *verifyingReader
	release func()
}

// NewReader opens an object read from r, which must be of the given kind.
func (c *Codec) NewReader(r io.Reader, kind Kind) (*ObjectReader, error) {
	var hb [headerLen]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return nil, fmt.Errorf("%w: reading header: %v", ErrCorrupt, err)
	}
	h, err := parseHeader(hb[:])
	if err != nil {
		return nil, err
	}
	if Kind(h.kind) != kind {
		return nil, fmt.Errorf("%w: object is a %s, expected a %s", ErrCorrupt, Kind(h.kind), kind)
	}
	body := r
	switch {
	case h.encryption == EncryptAge && !c.CanDecrypt():
		return nil, ErrNoIdentity
	case h.encryption == EncryptAge:
		dec, err := age.Decrypt(r, c.identities...)
		if err != nil {
			var noMatch *age.NoIdentityMatchError
			if errors.As(err, &noMatch) && !c.identitiesChecked {
				return nil, fmt.Errorf("%w: %v", ErrWrongIdentity, err)
			}
			if errors.As(err, &noMatch) {
				// The keys are known to match the repository's recipients, so
				// the object's own encryption header is what is wrong.
				return nil, fmt.Errorf("%w: the repository key cannot open it (encryption header damaged, or encrypted to other keys): %v", ErrCorrupt, err)
			}
			return nil, fmt.Errorf("%w: decrypt: %v", ErrCorrupt, err)
		}
		body = decryptReader{dec}
	case c.Encrypted() && !kind.plaintextAllowed():
		// Never accept plaintext where the repository promises encryption:
		// it would let anyone with write access inject data.
		return nil, fmt.Errorf("%w: unencrypted object in an encrypted repository", ErrCorrupt)
	}
	frames, err := newFrameReader(body, hb[:8])
	if err != nil {
		return nil, err
	}
	or := &ObjectReader{}
	var plain io.Reader = frames
	if h.compression == CompressZstd {
		zr := c.decoder()
		if err := zr.Reset(frames); err != nil {
			c.decoders.Put(zr)
			return nil, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
		plain = zstdReader{zr}
		or.release = func() { zr.Reset(nil); c.decoders.Put(zr) }
	}
	or.r = newVerifyingReader(plain, frames)
	return or, nil
}

// decryptReader marks authentication failures as corruption, named as such.
type decryptReader struct{ r io.Reader }

func (d decryptReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: decrypt: %v", ErrCorrupt, err)
	}
	return n, err
}

// zstdReader marks decompression errors as corruption.
type zstdReader struct{ d *zstd.Decoder }

func (z zstdReader) Read(p []byte) (int, error) {
	n, err := z.d.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrWrongIdentity) {
		err = fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
	}
	return n, err
}

func (c *Codec) decoder() *zstd.Decoder {
	if zr, ok := c.decoders.Get().(*zstd.Decoder); ok {
		return zr
	}
	// Bounded window and memory, so a hostile object cannot make us allocate
	// without limit; our writer never uses windows this large.
	zr, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(64<<20), zstd.WithDecoderMaxMemory(256<<20))
	if err != nil {
		panic(fmt.Sprintf("zstd decoder with constant options: %v", err))
	}
	return zr
}

// Read implements io.Reader.
func (or *ObjectReader) Read(p []byte) (int, error) { return or.r.Read(p) }

// Sum returns the SHA-256 of the plaintext, valid once Read returned
// io.EOF (that is, once it verified).
func (or *ObjectReader) Sum() [32]byte { return or.r.sum }

// Close returns pooled resources; it does not close the underlying reader.
func (or *ObjectReader) Close() error {
	if or.release != nil {
		or.release()
		or.release = nil
	}
	return nil
}

// Encryption errors a user can act on.
var (
	ErrNoIdentity    = errors.New("repository is encrypted and no identity was given: pass --identity-file or --passphrase-file (or TIDEMARK_IDENTITY_FILE / TIDEMARK_PASSPHRASE_FILE)")
	ErrWrongIdentity = errors.New("wrong key: the identity given does not open this repository's objects")
)
