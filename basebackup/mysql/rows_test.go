package mysql

import (
	"bytes"
	"io"
	"math"
	"reflect"
	"testing"
)

var testColumns = []RowColumn{{"i", KindInt}, {"u", KindUint}, {"f", KindFloat32}, {"d", KindFloat64},
	{"b", KindBytes}, {"dt", KindDate}, {"ts", KindDateTime}, {"tm", KindTime}}

func encodeRows(t testing.TB, rows []Row) []byte {
	var buf bytes.Buffer
	w, err := NewRowWriter(&buf, testColumns)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRowFormatRoundTrip(t *testing.T) {
	rows := []Row{
		{int64(math.MinInt64), uint64(math.MaxUint64), float32(math.SmallestNonzeroFloat32), math.Inf(-1),
			[]byte{}, "0000-00-00", "0000-00-00 00:00:00", "-838:59:59"},
		{int64(-1), uint64(0), float32(-0.1), math.MaxFloat64, []byte("\x00\xff é 𝄞"), "9999-12-31",
			"2024-02-29 23:59:59.000001", "838:59:59.999999"},
		{nil, nil, nil, nil, nil, nil, nil, nil},
		{int64(math.MaxInt64), uint64(1), float32(3.4028235e38), -0.0, []byte("x"), "1000-01-01", "1970-01-01 00:00:01.5", "-00:00:00.5"},
	}
	want := []Row{rows[0], rows[1], rows[2], rows[3]}
	want[3] = Row{int64(math.MaxInt64), uint64(1), float32(3.4028235e38), -0.0, []byte("x"), "1000-01-01", "1970-01-01 00:00:01.500000", "-00:00:00.500000"}
	data := encodeRows(t, rows)
	r, err := NewRowReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Columns(), testColumns) {
		t.Fatalf("columns %v", r.Columns())
	}
	for i, w := range want {
		got, err := r.Next(nil)
		if err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("row %d: got %#v want %#v", i, got, w)
		}
	}
	if _, err := r.Next(nil); err != io.EOF {
		t.Fatalf("after last row: %v", err)
	}
	// Every truncation is an error, never a shorter table.
	for n := 0; n < len(data); n++ {
		if err := drain(data[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(data))
		}
	}
	if err := drain(append(append([]byte{}, data...), 0)); err == nil {
		t.Fatal("trailing garbage accepted")
	}
}

func TestRowFormatRejectsBadValues(t *testing.T) {
	w, _ := NewRowWriter(io.Discard, testColumns)
	for _, r := range []Row{
		{"x", nil, nil, nil, nil, nil, nil, nil},
		{nil, nil, nil, nil, nil, "2024-13-01", nil, nil},
		{nil, nil, nil, nil, nil, nil, "2024-01-01 24:00:00", nil},
		{nil, nil, nil, nil, nil, nil, nil, "839:00:00"},
		{nil, nil, nil, nil, nil, nil, nil, "1:00:00.1234567"},
		{nil},
	} {
		if err := w.Write(r); err == nil {
			t.Errorf("%v accepted", r)
		}
	}
}

func drain(data []byte) error {
	r, err := NewRowReader(bytes.NewReader(data))
	if err != nil {
		return err
	}
	for {
		if _, err := r.Next(nil); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

func FuzzRowReader(f *testing.F) {
	f.Add(encodeRows(f, []Row{{int64(1), uint64(2), float32(3), 4.0, []byte("5"), "2001-02-03", "2001-02-03 04:05:06.7", "-1:02:03"}, {nil, nil, nil, nil, nil, nil, nil, nil}}))
	f.Add([]byte("TMRW\x01\x01\x05\x01a\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewRowReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		var rows []Row
		for {
			row, err := r.Next(nil)
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
			rows = append(rows, row)
		}
		// Whatever decodes completely re-encodes to a stream that decodes
		// to the same rows.
		var buf bytes.Buffer
		w, err := NewRowWriter(&buf, r.Columns())
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range rows {
			if err := w.Write(row); err != nil {
				t.Fatalf("re-encode %v: %v", row, err)
			}
		}
		w.Close()
		r2, err := NewRowReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		for i := range rows {
			got, err := r2.Next(nil)
			if err != nil || !reflect.DeepEqual(fmtRow(got), fmtRow(rows[i])) {
				t.Fatalf("row %d: %v %v != %v", i, err, got, rows[i])
			}
		}
	})
}

// fmtRow compares NaNs by bits.
func fmtRow(r Row) []any {
	out := make([]any, len(r))
	for i, v := range r {
		switch x := v.(type) {
		case float32:
			out[i] = math.Float32bits(x)
		case float64:
			out[i] = math.Float64bits(x)
		default:
			out[i] = v
		}
	}
	return out
}
