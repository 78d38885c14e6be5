package mysql

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
)

// MySQL table data is stored in a typed binary row format (docs/format.md,
// "MySQL table data"), one stream per primary-key range:
//
//	"TMRW" version(1) ncols(uvarint) { kind(1) namelen(uvarint) name }*
//	{ 0x01 nullbitmap[(ncols+7)/8] value* }*   one record per row
//	0x00 rows(uvarint)                           end marker with the row count
//
// Values are the server's raw bytes (binary protocol, connection character
// set binary), never text conversions: strings, DECIMAL, BIT, ENUM/SET,
// JSON and geometry keep the exact bytes; integers and floats their binary
// value; temporal types their fields. The end marker and its count make a
// truncated stream an error rather than a shorter table.
const (
	rowMagic   = "TMRW"
	RowVersion = 1
	maxColumns = 4096    // MySQL allows 4096 columns per table
	maxValue   = 1 << 32 // LONGBLOB maximum
)

// ColumnKind is how one column's values are encoded.
type ColumnKind uint8

const (
	KindInt      ColumnKind = 1 // signed integer: zigzag varint
	KindUint     ColumnKind = 2 // unsigned integer (also YEAR): uvarint
	KindFloat32  ColumnKind = 3 // IEEE 754 single, 4 bytes little-endian
	KindFloat64  ColumnKind = 4 // IEEE 754 double, 8 bytes little-endian
	KindBytes    ColumnKind = 5 // raw bytes: uvarint length + bytes
	KindDate     ColumnKind = 6 // uvarint (year*13+month)*32+day
	KindDateTime ColumnKind = 7 // uvarint date<<17|h<<12|m<<6|s, uvarint microseconds
	KindTime     ColumnKind = 8 // sign byte, uvarint seconds, uvarint microseconds
)

func (k ColumnKind) valid() bool { return k >= KindInt && k <= KindTime }

// RowColumn names one column of a row stream.
type RowColumn struct {
	Name string
	Kind ColumnKind
}

// Row values by kind: nil (NULL), int64, uint64, float32, float64, []byte
// (bytes), and for temporal kinds the canonical text MySQL accepts
// ("2024-02-29", "2024-02-29 13:14:15.000123", "-838:59:59.5").
type Row []any

// RowWriter encodes rows.
type RowWriter struct {
	w    *bufio.Writer
	cols []RowColumn
	rows uint64
	buf  []byte
}

// NewRowWriter writes the header for cols.
func NewRowWriter(w io.Writer, cols []RowColumn) (*RowWriter, error) {
	if len(cols) == 0 || len(cols) > maxColumns {
		return nil, fmt.Errorf("row stream: %d columns", len(cols))
	}
	rw := &RowWriter{w: bufio.NewWriterSize(w, 64<<10), cols: cols}
	b := append([]byte(rowMagic), RowVersion)
	b = binary.AppendUvarint(b, uint64(len(cols)))
	for _, c := range cols {
		if !c.Kind.valid() {
			return nil, fmt.Errorf("row stream: column %s: bad kind %d", c.Name, c.Kind)
		}
		b = append(b, byte(c.Kind))
		b = binary.AppendUvarint(b, uint64(len(c.Name)))
		b = append(b, c.Name...)
	}
	_, err := rw.w.Write(b)
	return rw, err
}

// Write encodes one row.
func (rw *RowWriter) Write(row Row) error {
	if len(row) != len(rw.cols) {
		return fmt.Errorf("row stream: row of %d values for %d columns", len(row), len(rw.cols))
	}
	b := append(rw.buf[:0], 1)
	nb := len(b)
	b = append(b, make([]byte, (len(row)+7)/8)...)
	for i, v := range row {
		if v == nil {
			b[nb+i/8] |= 1 << (i % 8)
			continue
		}
		var err error
		if b, err = appendValue(b, rw.cols[i].Kind, v); err != nil {
			return fmt.Errorf("row stream: column %s: %w", rw.cols[i].Name, err)
		}
	}
	rw.buf = b
	rw.rows++
	_, err := rw.w.Write(b)
	return err
}

// Close writes the end marker and flushes; it does not close the writer.
func (rw *RowWriter) Close() error {
	b := binary.AppendUvarint([]byte{0}, rw.rows)
	if _, err := rw.w.Write(b); err != nil {
		return err
	}
	return rw.w.Flush()
}

// Rows is the number of rows written.
func (rw *RowWriter) Rows() uint64 { return rw.rows }

func appendValue(b []byte, k ColumnKind, v any) ([]byte, error) {
	switch k {
	case KindInt:
		x, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("want int64, got %T", v)
		}
		return binary.AppendVarint(b, x), nil
	case KindUint:
		x, ok := v.(uint64)
		if !ok {
			return nil, fmt.Errorf("want uint64, got %T", v)
		}
		return binary.AppendUvarint(b, x), nil
	case KindFloat32:
		x, ok := v.(float32)
		if !ok {
			return nil, fmt.Errorf("want float32, got %T", v)
		}
		return binary.LittleEndian.AppendUint32(b, math.Float32bits(x)), nil
	case KindFloat64:
		x, ok := v.(float64)
		if !ok {
			return nil, fmt.Errorf("want float64, got %T", v)
		}
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(x)), nil
	case KindBytes:
		x, ok := v.([]byte)
		if !ok {
			return nil, fmt.Errorf("want []byte, got %T", v)
		}
		b = binary.AppendUvarint(b, uint64(len(x)))
		return append(b, x...), nil
	default:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want temporal text, got %T", v)
		}
		return appendTemporal(b, k, s)
	}
}

// RowReader decodes a row stream.
type RowReader struct {
	r    *bufio.Reader
	cols []RowColumn
	rows uint64
	done bool
}

// NewRowReader reads and checks the header.
func NewRowReader(r io.Reader) (*RowReader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head := make([]byte, len(rowMagic)+1)
	if _, err := io.ReadFull(br, head); err != nil {
		return nil, fmt.Errorf("row stream header: %w", noEOF(err))
	}
	if string(head[:4]) != rowMagic {
		return nil, errors.New("row stream: bad magic")
	}
	if head[4] != RowVersion {
		return nil, fmt.Errorf("row stream: unsupported version %d", head[4])
	}
	n, err := binary.ReadUvarint(br)
	if err != nil || n == 0 || n > maxColumns {
		return nil, fmt.Errorf("row stream: bad column count %d: %v", n, noEOF(err))
	}
	rr := &RowReader{r: br, cols: make([]RowColumn, n)}
	for i := range rr.cols {
		k, err := br.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("row stream header: %w", noEOF(err))
		}
		if !ColumnKind(k).valid() {
			return nil, fmt.Errorf("row stream: column %d: bad kind %d", i, k)
		}
		name, err := readBytes(br, 64*4) // identifiers are at most 64 characters
		if err != nil {
			return nil, fmt.Errorf("row stream header: %w", err)
		}
		rr.cols[i] = RowColumn{Name: string(name), Kind: ColumnKind(k)}
	}
	return rr, nil
}

// Columns returns the stream's columns.
func (rr *RowReader) Columns() []RowColumn { return rr.cols }

// Next decodes the next row into dst (reused when large enough); io.EOF
// after the end marker, an error for anything truncated or malformed.
func (rr *RowReader) Next(dst Row) (Row, error) {
	if rr.done {
		return nil, io.EOF
	}
	tag, err := rr.r.ReadByte()
	if err != nil {
		return nil, fmt.Errorf("row stream: truncated after %d rows: %w", rr.rows, noEOF(err))
	}
	switch tag {
	case 0:
		n, err := binary.ReadUvarint(rr.r)
		if err != nil {
			return nil, fmt.Errorf("row stream end: %w", noEOF(err))
		}
		if n != rr.rows {
			return nil, fmt.Errorf("row stream: end marker says %d rows, read %d", n, rr.rows)
		}
		if _, err := rr.r.ReadByte(); err != io.EOF {
			return nil, errors.New("row stream: data after the end marker")
		}
		rr.done = true
		return nil, io.EOF
	case 1:
	default:
		return nil, fmt.Errorf("row stream: bad record tag %d after %d rows", tag, rr.rows)
	}
	nulls := make([]byte, (len(rr.cols)+7)/8)
	if _, err := io.ReadFull(rr.r, nulls); err != nil {
		return nil, fmt.Errorf("row stream: %w", noEOF(err))
	}
	if cap(dst) < len(rr.cols) {
		dst = make(Row, len(rr.cols))
	}
	dst = dst[:len(rr.cols)]
	for i, c := range rr.cols {
		if nulls[i/8]&(1<<(i%8)) != 0 {
			dst[i] = nil
			continue
		}
		if dst[i], err = rr.value(c.Kind); err != nil {
			return nil, fmt.Errorf("row stream: row %d column %s: %w", rr.rows+1, c.Name, err)
		}
	}
	rr.rows++
	return dst, nil
}

func (rr *RowReader) value(k ColumnKind) (any, error) {
	switch k {
	case KindInt:
		v, err := binary.ReadVarint(rr.r)
		return v, noEOF(err)
	case KindUint:
		v, err := binary.ReadUvarint(rr.r)
		return v, noEOF(err)
	case KindFloat32:
		var b [4]byte
		if _, err := io.ReadFull(rr.r, b[:]); err != nil {
			return nil, noEOF(err)
		}
		return math.Float32frombits(binary.LittleEndian.Uint32(b[:])), nil
	case KindFloat64:
		var b [8]byte
		if _, err := io.ReadFull(rr.r, b[:]); err != nil {
			return nil, noEOF(err)
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(b[:])), nil
	case KindBytes:
		return readBytes(rr.r, maxValue)
	default:
		return readTemporal(rr.r, k)
	}
}

func readBytes(r *bufio.Reader, limit uint64) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, noEOF(err)
	}
	if n > limit {
		return nil, fmt.Errorf("value of %d bytes exceeds %d", n, limit)
	}
	// Grown as it arrives: a corrupt length must not allocate 4 GiB up front.
	b := make([]byte, 0, min(n, 1<<20))
	for uint64(len(b)) < n {
		step := min(n-uint64(len(b)), 1<<20)
		start := len(b)
		b = append(b, make([]byte, step)...)
		if _, err := io.ReadFull(r, b[start:]); err != nil {
			return nil, noEOF(err)
		}
	}
	return b, nil
}

// noEOF turns a clean EOF inside a structure into an unexpected one.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Temporal values come from the server (via the client library) as text;
// they are stored by their fields and turned back into the same text.

func appendTemporal(b []byte, k ColumnKind, s string) ([]byte, error) {
	switch k {
	case KindDate:
		y, mo, d, err := parseDate(s)
		if err != nil {
			return nil, err
		}
		return binary.AppendUvarint(b, (y*13+mo)*32+d), nil
	case KindDateTime:
		if len(s) < 19 || s[10] != ' ' {
			return nil, fmt.Errorf("datetime %q", s)
		}
		y, mo, d, err := parseDate(s[:10])
		if err != nil {
			return nil, err
		}
		secs, micro, err := parseClock(s[11:], 23)
		if err != nil {
			return nil, err
		}
		h, mi, sec := secs/3600, secs/60%60, secs%60
		b = binary.AppendUvarint(b, ((y*13+mo)*32+d)<<17|h<<12|mi<<6|sec)
		return binary.AppendUvarint(b, micro), nil
	case KindTime:
		neg := byte(0)
		if len(s) > 0 && s[0] == '-' {
			neg, s = 1, s[1:]
		}
		secs, micro, err := parseClock(s, 838)
		if err != nil {
			return nil, err
		}
		b = append(b, neg)
		b = binary.AppendUvarint(b, secs)
		return binary.AppendUvarint(b, micro), nil
	}
	return nil, fmt.Errorf("kind %d is not temporal", k)
}

func parseDate(s string) (y, m, d uint64, err error) {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return 0, 0, 0, fmt.Errorf("date %q", s)
	}
	y, e1 := strconv.ParseUint(s[:4], 10, 16)
	m, e2 := strconv.ParseUint(s[5:7], 10, 8)
	d, e3 := strconv.ParseUint(s[8:], 10, 8)
	if e1 != nil || e2 != nil || e3 != nil || m > 12 || d > 31 {
		return 0, 0, 0, fmt.Errorf("date %q", s)
	}
	return y, m, d, nil
}

// parseClock parses H+:MM:SS[.ffffff] into seconds and microseconds.
func parseClock(s string, maxHour uint64) (secs, micro uint64, err error) {
	bad := errBadClock(s)
	clock, frac, hasFrac := cut(s, '.')
	h, rest, ok := cut(clock, ':')
	if !ok || len(rest) != 5 || rest[2] != ':' {
		return 0, 0, bad
	}
	hh, e1 := strconv.ParseUint(h, 10, 16)
	mm, e2 := strconv.ParseUint(rest[:2], 10, 8)
	ss, e3 := strconv.ParseUint(rest[3:], 10, 8)
	if e1 != nil || e2 != nil || e3 != nil || hh > maxHour || mm > 59 || ss > 59 {
		return 0, 0, bad
	}
	if hasFrac {
		if len(frac) == 0 || len(frac) > 6 {
			return 0, 0, bad
		}
		f, err := strconv.ParseUint(frac, 10, 32)
		if err != nil {
			return 0, 0, bad
		}
		for i := len(frac); i < 6; i++ {
			f *= 10
		}
		micro = f
	}
	return hh*3600 + mm*60 + ss, micro, nil
}

// errBadClock is built only when returned: this runs for every temporal
// value of a backup.
type errBadClock string

func (e errBadClock) Error() string { return fmt.Sprintf("time %q", string(e)) }

func cut(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func readTemporal(r *bufio.Reader, k ColumnKind) (string, error) {
	switch k {
	case KindDate:
		v, err := binary.ReadUvarint(r)
		if err != nil {
			return "", noEOF(err)
		}
		return formatDate(v)
	case KindDateTime:
		v, err := binary.ReadUvarint(r)
		if err != nil {
			return "", noEOF(err)
		}
		micro, err := binary.ReadUvarint(r)
		if err != nil {
			return "", noEOF(err)
		}
		date, err := formatDate(v >> 17)
		if err != nil {
			return "", err
		}
		h, mi, s := v>>12&31, v>>6&63, v&63
		if h > 23 || mi > 59 || s > 59 || micro > 999999 {
			return "", fmt.Errorf("bad datetime fields")
		}
		return date + " " + formatClock(h*3600+mi*60+s, micro), nil
	default:
		neg, err := r.ReadByte()
		if err != nil {
			return "", noEOF(err)
		}
		secs, err := binary.ReadUvarint(r)
		if err != nil {
			return "", noEOF(err)
		}
		micro, err := binary.ReadUvarint(r)
		if err != nil {
			return "", noEOF(err)
		}
		if neg > 1 || secs > 838*3600+59*60+59 || micro > 999999 {
			return "", fmt.Errorf("bad time fields")
		}
		sign := ""
		if neg == 1 {
			sign = "-"
		}
		return sign + formatClock(secs, micro), nil
	}
}

func formatDate(v uint64) (string, error) {
	d, ym := v%32, v/32
	y, m := ym/13, ym%13
	if y > 9999 {
		return "", fmt.Errorf("bad date value %d", v)
	}
	return fmt.Sprintf("%04d-%02d-%02d", y, m, d), nil
}

func formatClock(secs, micro uint64) string {
	s := fmt.Sprintf("%02d:%02d:%02d", secs/3600, secs/60%60, secs%60)
	if micro != 0 {
		s += fmt.Sprintf(".%06d", micro)
	}
	return s
}
