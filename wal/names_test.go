package wal

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/file"
)

func TestFileNames(t *testing.T) {
	g := Geometry{SegSize: 16 << 20}
	if got := g.FileName(1, 0x1FF); got != "0000000100000001000000FF" {
		t.Fatalf("FileName = %s", got)
	}
	tli, segno, err := g.ParseFileName("0000000300000002000000A0")
	if err != nil || tli != 3 || segno != 2*256+0xA0 {
		t.Fatalf("ParseFileName = %d %d %v", tli, segno, err)
	}
	for _, bad := range []string{"", "00000001000000020000010000", "00000001000000020000010X", "000000010000000200000100"} {
		if _, _, err := g.ParseFileName(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	big := Geometry{SegSize: 1 << 30}
	if got := big.FileName(2, 9); got != "000000020000000200000001" {
		t.Fatalf("1 GiB segments: %s", got)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{"16MB": 16 << 20, "1GB": 1 << 30, "64MB": 64 << 20} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("%s = %d, %v", in, got, err)
		}
	}
	for _, bad := range []string{"15MB", "16 MB", "512kB", "x", ""} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseHistory(t *testing.T) {
	h, err := parseHistory([]byte("1\t0/3000000\tno recovery target specified\n\n2\t0/5000A28\tat restore point \"x\"\n"), 3)
	if err != nil {
		t.Fatal(err)
	}
	sw, next, ok := h.switchOf(1)
	if !ok || sw != 0x3000000 || next != 2 {
		t.Fatalf("switchOf(1) = %s %d %v", sw, next, ok)
	}
	sw, next, ok = h.switchOf(2)
	if !ok || sw != 0x5000A28 || next != 3 {
		t.Fatalf("switchOf(2) = %s %d %v", sw, next, ok)
	}
	if _, _, ok := h.switchOf(3); ok {
		t.Fatal("the current timeline has no switch point")
	}
	if _, err := parseHistory([]byte("1 zzz\n"), 2); err == nil {
		t.Fatal("bad history accepted")
	}
}

func TestStateFromNamesAndFetchOfParts(t *testing.T) {
	ctx := context.Background()
	s, _ := file.Open(t.TempDir())
	repo, err := archive.Init(ctx, s, archive.InitOptions{NoEncrypt: true})
	if err != nil {
		t.Fatal(err)
	}
	g := Geometry{SegSize: 1 << 20}
	w := writer{repo: repo, g: g}
	seg := bytes.Repeat([]byte{1}, 1<<20)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.putSegment(ctx, 1, 1, seg))
	// segment 2 missing: a gap
	must(w.putPart(ctx, 1, 3, 0, 100, seg[:100]))
	must(w.putPart(ctx, 1, 3, 50, 200, bytes.Repeat([]byte{3}, 150))) // overlaps, as after a resume
	must(w.putPart(ctx, 1, 4, 0, 50, seg[:50]))
	st, err := LoadState(ctx, s, g)
	if err != nil {
		t.Fatal(err)
	}
	tl := st.Latest()
	if tl.Start != g.SegStart(1) || tl.End != g.SegStart(4)+50 || tl.Complete != 1 || tl.Partial != 2 {
		t.Fatalf("state = %+v", tl)
	}
	want := []string{"timeline 1 0/200000–0/300000", "timeline 1 0/3000C8–0/400000"}
	var got []string
	for _, gp := range tl.Gaps {
		got = append(got, gp.String())
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("gaps = %v, want %v", got, want)
	}
	var buf bytes.Buffer
	must(Fetch(ctx, repo, g, g.FileName(1, 3), &buf))
	b := buf.Bytes()
	if len(b) != 1<<20 || b[0] != 1 || b[99] != 1 || b[100] != 3 || b[199] != 3 || b[200] != 0 {
		t.Fatalf("assembled partial segment wrong: len %d", len(b))
	}
	if err := Fetch(ctx, repo, g, g.FileName(1, 2), &buf); !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("fetch of a missing segment: %v", err)
	}
	// Consolidation removes the parts.
	must(w.putSegment(ctx, 1, 4, seg))
	st, _ = LoadState(ctx, s, g)
	if st.Latest().Partial != 1 {
		t.Fatalf("parts of segment 4 not dropped: %+v", st.Latest())
	}
}

func FuzzParseObject(f *testing.F) {
	g := Geometry{SegSize: 16 << 20}
	f.Add("wal/00000001/000000010000000000000003")
	f.Add("wal/00000001/000000010000000000000003.part-00000000-00001000")
	f.Fuzz(func(t *testing.T, name string) {
		o, ok := g.parseObject(name)
		if !ok {
			return
		}
		var back string
		if o.part {
			back = g.partObject(o.tli, o.segno, o.from, o.to)
		} else {
			back = g.segmentObject(o.tli, o.segno)
		}
		if back != name {
			t.Fatalf("%q parsed to %+v, which names %q", name, o, back)
		}
	})
}
