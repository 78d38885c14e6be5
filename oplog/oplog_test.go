package oplog

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tidemark/tidemark/archive"
)

func TestParseTS(t *testing.T) {
	for in, want := range map[string]TS{"1764509000:3": {1764509000, 3}, " 1:0 ": {1, 0}, "4294967295:4294967295": {^uint32(0), ^uint32(0)}} {
		got, err := ParseTS(in)
		if err != nil || got != want {
			t.Errorf("ParseTS(%q) = %v, %v", in, got, err)
		}
		if again, _ := ParseTS(got.String()); again != got {
			t.Errorf("round trip of %v: %v", got, again)
		}
	}
	for _, bad := range []string{"", "1", "1:", ":1", "a:1", "1:b", "-1:0", "+1:0", "1:+2", "4294967296:0", "1:2:3", "1.5:0"} {
		if _, err := ParseTS(bad); err == nil {
			t.Errorf("ParseTS(%q) accepted", bad)
		}
	}
	if !(TS{1, 2}).Less(TS{1, 3}) || !(TS{1, 9}).Less(TS{2, 0}) || (TS{2, 0}).Less(TS{2, 0}) {
		t.Error("TS order")
	}
}

func entryBytes(t testing.TB, ts TS, op string) []byte {
	t.Helper()
	b, err := bson.Marshal(bson.D{{Key: "ts", Value: ts.BSON()}, {Key: "op", Value: op}, {Key: "ns", Value: "db.c"},
		{Key: "o", Value: bson.D{{Key: "_id", Value: 1}}}, {Key: "wall", Value: bson.DateTime(1764509000123)}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSegmentRoundTrip(t *testing.T) {
	// Two flushed pieces concatenated, as consolidation stores them.
	var data []byte
	data = append(data, SegmentHeader()...)
	data = append(data, entryBytes(t, TS{10, 1}, "i")...)
	data = append(data, SegmentHeader()...)
	data = append(data, entryBytes(t, TS{10, 2}, "u")...)
	data = append(data, entryBytes(t, TS{11, 0}, "d")...)
	r := NewSegmentReader(bytes.NewReader(data))
	var got []TS
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.NS != "db.c" || e.Wall != time.UnixMilli(1764509000123).UTC() || e.Key != e.TS.String() {
			t.Fatalf("entry = %+v", e)
		}
		got = append(got, e.TS)
	}
	if len(got) != 3 || got[2] != (TS{11, 0}) {
		t.Fatalf("entries %v", got)
	}
	for name, bad := range map[string][]byte{
		"no header":        entryBytes(t, TS{1, 1}, "i"),
		"truncated":        data[:len(data)-3],
		"bad op":           append(SegmentHeader(), entryBytes(t, TS{1, 1}, "x")...),
		"damaged header":   append(append(SegmentHeader(), []byte("TMOPxxxx")...), entryBytes(t, TS{1, 1}, "i")...),
		"other version":    append([]byte("TMOPLOG\x02"), entryBytes(t, TS{1, 1}, "i")...),
		"huge length":      append(SegmentHeader(), 0xff, 0xff, 0xff, 0x7f),
		"not a document":   append(SegmentHeader(), 6, 0, 0, 0, 1, 0),
		"missing o":        append(SegmentHeader(), mustMarshal(t, bson.D{{Key: "ts", Value: bson.Timestamp{T: 1}}, {Key: "op", Value: "i"}})...),
		"ts not timestamp": append(SegmentHeader(), mustMarshal(t, bson.D{{Key: "ts", Value: 5}, {Key: "op", Value: "n"}})...),
	} {
		r := NewSegmentReader(bytes.NewReader(bad))
		var err error
		for err == nil {
			_, err = r.Next()
		}
		if err == io.EOF {
			t.Errorf("%s: read without error", name)
		}
	}
}

func mustMarshal(t testing.TB, d bson.D) []byte {
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func seg(first, last uint64, start, end string, lastTime int64) archive.SegmentInfo {
	return archive.SegmentInfo{Stream: "oplog/rs0", First: first, Last: last, Start: start, End: end,
		FirstTime: time.Unix(lastTime-1, 0), LastTime: time.Unix(lastTime, 0)}
}

func TestRange(t *testing.T) {
	c := &archive.StreamChain{Segments: []archive.SegmentInfo{
		seg(1, 1, "100:0", "110:5", 110),
		seg(2, 2, "110:5", "120:1", 120),
		seg(3, 3, "120:1", "130:0", 130),
		// restarted elsewhere after a rollover: a break
		seg(4, 4, "200:0", "210:0", 210),
	}}
	got, err := Range(c, TS{105, 0}, TS{125, 0})
	if err != nil || len(got) != 3 || got[0].First != 1 || got[2].First != 3 {
		t.Fatalf("Range inside a span = %v, %v", got, err)
	}
	// Entries up to the base's start are not needed: the first segment
	// is skipped when it ends exactly there.
	if got, err := Range(c, TS{110, 5}, TS{115, 0}); err != nil || got[0].First != 2 {
		t.Fatalf("Range from a segment end = %v, %v", got, err)
	}
	if _, err := Range(c, TS{105, 0}, TS{205, 0}); !errors.Is(err, ErrMissing) {
		t.Fatalf("across the break: %v", err)
	}
	if _, err := Range(c, TS{50, 0}, TS{105, 0}); !errors.Is(err, ErrMissing) {
		t.Fatalf("before the archive: %v", err)
	}
	if _, err := Range(c, TS{205, 0}, TS{300, 0}); !errors.Is(err, ErrBeyond) {
		t.Fatalf("past the end: %v", err)
	}
	if _, err := Range(c, TS{220, 0}, TS{230, 0}); !errors.Is(err, ErrBeyond) {
		t.Fatalf("starting past the end: %v", err)
	}
	if _, err := Range(&archive.StreamChain{}, TS{1, 0}, TS{2, 0}); !errors.Is(err, ErrBeyond) {
		t.Fatalf("empty archive: %v", err)
	}
	spans, err := Spans(c)
	if err != nil || len(spans) != 2 || spans[0].End != (TS{130, 0}) || spans[1].Start != (TS{200, 0}) {
		t.Fatalf("spans = %v, %v", spans, err)
	}
	if ts, ok := TimeTS(c, time.Unix(115, 0)); !ok || ts != (TS{120, 1}) {
		t.Fatalf("TimeTS = %v %v", ts, ok)
	}
	if _, ok := TimeTS(c, time.Unix(300, 0)); ok {
		t.Fatal("TimeTS past the archive")
	}
	bad := &archive.StreamChain{Segments: []archive.SegmentInfo{seg(1, 1, "x", "1:1", 1)}}
	if _, err := Spans(bad); !errors.Is(err, archive.ErrCorrupt) {
		t.Fatalf("corrupt positions: %v", err)
	}
}

func TestInternal(t *testing.T) {
	for ns, want := range map[string]bool{"config.system.sessions": true, "config.transactions": true, "config.image_collection": true,
		"local.oplog.rs": true, "admin.system.users": true, "app.system.views": true, "app.system.buckets.m": true,
		"app.c": false, "app.systems": false} {
		if Internal(ns) != want {
			t.Errorf("Internal(%q) = %v", ns, !want)
		}
	}
}

func FuzzSegmentReader(f *testing.F) {
	f.Add(append(SegmentHeader(), entryBytes(f, TS{1, 1}, "i")...))
	f.Add(append(append(SegmentHeader(), entryBytes(f, TS{1, 1}, "u")...), SegmentHeader()...))
	f.Add([]byte("TMOPLOG\x01TMOP"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewSegmentReader(bytes.NewReader(data))
		for range 1000 {
			e, err := r.Next()
			if err != nil {
				return
			}
			if e.Op == "" || len(e.Raw) < 5 {
				t.Fatalf("accepted entry without op: %+v", e)
			}
		}
	})
}

func FuzzParseTS(f *testing.F) {
	for _, s := range []string{"1:2", "4294967295:0", "", ":", "1:-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := ParseTS(s)
		if err != nil {
			return
		}
		if again, err := ParseTS(ts.String()); err != nil || again != ts {
			t.Fatalf("%q parsed as %v, which does not round-trip", s, ts)
		}
	})
}
