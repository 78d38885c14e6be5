package archive

import (
	"bytes"
	"io"
	"testing"

	"filippo.io/age"
)

// fuzzIdentity is fixed so the corpus's encrypted seeds stay decryptable.
const fuzzIdentity = "AGE-SECRET-KEY-147KY4ZAC8FR4V46WHKKP6FT5KN7LYXTX5JLE2UMTSGJV46FWP42QWGKD3L"

func fuzzCodecs(t testing.TB) []*Codec {
	id, err := age.ParseX25519Identity(fuzzIdentity)
	if err != nil {
		t.Fatal(err)
	}
	var out []*Codec
	for _, o := range []CodecOptions{
		{Compression: CompressNone},
		{Compression: CompressZstd},
		{Compression: CompressZstd, Recipients: []age.Recipient{id.Recipient()}, Identities: []age.Identity{id}},
	} {
		c, err := NewCodec(o)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func seal(t testing.TB, c *Codec, kind Kind, data []byte) []byte {
	var buf bytes.Buffer
	w, err := c.NewWriter(&buf, kind)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzObjectReader: any input gives data that verified, or an error; never a
// panic or a hang.
func FuzzObjectReader(f *testing.F) {
	codecs := fuzzCodecs(f)
	for _, c := range codecs {
		for _, d := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("tidemark"), 5000)} {
			f.Add(seal(f, c, KindBlob, d))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, c := range codecs {
			r, err := c.NewReader(bytes.NewReader(b), KindBlob)
			if err != nil {
				continue
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<20))
			r.Close()
		}
	})
}

// FuzzParseConfig: bad configs are errors, good ones survive a round trip.
func FuzzParseConfig(f *testing.F) {
	cfg, _, err := newConfig(InitOptions{NoEncrypt: true})
	if err != nil {
		f.Fatal(err)
	}
	good, _ := jsonMarshal(cfg)
	f.Add(good)
	f.Add([]byte(`{"format":"tidemark-repository","version":2}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		again, err := jsonMarshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseConfig(again); err != nil {
			t.Fatalf("valid config does not survive a round trip: %v", err)
		}
	})
}

// FuzzChunkIndex: any payload parses or errors; parsed ones re-encode exactly.
func FuzzChunkIndex(f *testing.F) {
	f.Add(marshalRefs([]indexEntry{{plain: 1, stored: 2}}))
	f.Add(marshalChunkIndex([]indexEntry{{pack: packID{1}, off: 12, length: 40, plain: 7}}))
	f.Add([]byte{1})
	f.Add([]byte{2, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := parseChunkIndex(b)
		if err != nil {
			return
		}
		again := marshalChunkIndex(entries)
		if b[0] == 1 {
			again = marshalRefs(entries)
		}
		if !bytes.Equal(again, b) {
			t.Fatal("chunk index does not re-encode to the same bytes")
		}
	})
}

// FuzzPackTrailer: any pack tail parses or errors; parsed members lie in
// order between the header and the trailer, and re-encode exactly.
func FuzzPackTrailer(f *testing.F) {
	f.Add(append(make([]byte, 40), marshalPackTrailer([]packEntry{{id: ChunkID{1}, off: 12, length: 20, plain: 9}, {off: 32, length: 8}})...), int64(0))
	f.Add(marshalPackTrailer(nil), int64(5))
	f.Fuzz(func(t *testing.T, tail []byte, extra int64) {
		if extra < 0 || extra > 1<<20 {
			return
		}
		size := int64(len(tail)) + extra
		entries, err := parsePackTrailer(tail, size)
		if err != nil {
			return
		}
		trailer := marshalPackTrailer(entries)
		if !bytes.HasSuffix(tail, trailer) {
			t.Fatal("pack trailer does not re-encode to the same bytes")
		}
		next := int64(headerLen)
		for _, e := range entries {
			if int64(e.off) < next || e.length == 0 || int64(e.off)+int64(e.length) > size-int64(len(trailer)) {
				t.Fatalf("member %+v out of place in a pack of %d bytes", e, size)
			}
			next = int64(e.off) + int64(e.length)
		}
	})
}
