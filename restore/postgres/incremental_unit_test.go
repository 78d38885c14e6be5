package postgres

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/tidemark/tidemark/archive"
)

func incrFile(blocks []uint32, truncation uint32, bs int) []byte {
	b := binary.LittleEndian.AppendUint32(nil, incrementalMagic)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(blocks)))
	b = binary.LittleEndian.AppendUint32(b, truncation)
	for _, n := range blocks {
		b = binary.LittleEndian.AppendUint32(b, n)
	}
	if len(blocks) > 0 && len(b)%bs != 0 {
		b = append(b, make([]byte, bs-len(b)%bs)...)
	}
	return b
}

func TestParseIncrHeader(t *testing.T) {
	h, err := parseIncrHeader(incrFile([]uint32{1, 5, 9}, 12, 8192), 8192)
	if err != nil || h.length != 8192 || h.truncation != 12 || len(h.blocks) != 3 || h.blocks[2] != 9 {
		t.Fatalf("%+v %v", h, err)
	}
	if h, err := parseIncrHeader(incrFile(nil, 7, 8192), 8192); err != nil || h.length != 12 || h.truncation != 7 {
		t.Fatalf("no blocks: %+v %v", h, err)
	}
	for name, b := range map[string][]byte{
		"short":      {1, 2, 3},
		"magic":      append([]byte{0, 0, 0, 0}, incrFile(nil, 1, 8192)[4:]...),
		"unsorted":   incrFile([]uint32{5, 1}, 9, 8192),
		"huge count": binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, incrementalMagic), 1<<30), 0),
		"cut":        incrFile([]uint32{1, 2, 3}, 9, 8192)[:16],
	} {
		if _, err := parseIncrHeader(b, 8192); !errors.Is(err, archive.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

// TestPieces: runs of blocks contiguous in one source become one piece,
// cut at the source's chunk boundaries; blocks without a source are holes.
func TestPieces(t *testing.T) {
	const bs = 4
	full := &archive.FileEntry{Path: "f", Chunks: []archive.ChunkRef{{Size: 8}, {Size: 8}}}  // blocks 0-3
	inc := &archive.FileEntry{Path: "INCREMENTAL.f", Chunks: []archive.ChunkRef{{Size: 12}}} // header 4, blocks at 4, 8
	src := []source{{full, 0}, {inc, 4}, {full, 8}, {full, 12}, {}, {inc, 8}}
	ps, err := pieces(src, bs)
	if err != nil {
		t.Fatal(err)
	}
	want := []piece{
		{ref: full.Chunks[0], from: 0, n: 4, off: 0},
		{ref: inc.Chunks[0], from: 4, n: 4, off: 4},
		{ref: full.Chunks[1], from: 0, n: 8, off: 8},
		{ref: inc.Chunks[0], from: 8, n: 4, off: 20},
	}
	if len(ps) != len(want) {
		t.Fatalf("pieces %+v", ps)
	}
	for i := range want {
		if ps[i] != want[i] {
			t.Errorf("piece %d: %+v, want %+v", i, ps[i], want[i])
		}
	}
	if _, err := pieces([]source{{full, 16}}, bs); !errors.Is(err, archive.ErrCorrupt) {
		t.Fatalf("a block past the file: %v", err)
	}
}

func FuzzParseIncrHeader(f *testing.F) {
	f.Add(incrFile([]uint32{1, 5, 9}, 12, 8192))
	f.Add(incrFile(nil, 3, 8192))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseIncrHeader(b, 8192)
		if err != nil {
			return
		}
		if h.length < 12+4*int64(len(h.blocks)) || (len(h.blocks) > 0 && h.length%8192 != 0) {
			t.Fatalf("header length %d for %d blocks", h.length, len(h.blocks))
		}
	})
}
