package mysql

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"golang.org/x/sync/errgroup"

	"github.com/tidemark/tidemark/archive"
)

// part is one primary-key range of one table.
type part struct {
	db, table int // indexes into the schema
	seq       int
	path      string
	where     string // "" or a condition on the primary key with ? placeholders
	args      []any
	est       int64 // estimated bytes, for scheduling the largest first
	file      archive.FileEntry
	rows      int64
}

type dumper struct {
	cfg    Config
	chunks *archive.ChunkWriter
	snap   *snapshot
	done   atomic.Int64
	total  int64
}

// run dumps every table's parts on the snapshot's connections and fills
// in each table's parts and row count. Non-transactional tables are not in
// the snapshot: they are copied first, while the snapshot's lock still
// blocks writes to them, which is then released; transactional tables are
// split into key ranges and copied from the snapshot, largest first.
func (d *dumper) run(ctx context.Context, coord *client.Conn, schema *Schema) ([]archive.FileEntry, error) {
	var locked, parts []*part
	for di := range schema.Databases {
		db := &schema.Databases[di]
		for ti := range db.Tables {
			if t := &db.Tables[ti]; t.Locked {
				locked = append(locked, d.name(schema, &part{db: di, table: ti, est: t.estBytes}))
			}
		}
	}
	d.total = sumEst(locked)
	err := d.dumpAll(ctx, schema, locked)
	if rerr := d.snap.release(coord); err == nil {
		err = rerr
	}
	if err != nil {
		return nil, err
	}
	for di := range schema.Databases {
		db := &schema.Databases[di]
		for ti := range db.Tables {
			if db.Tables[ti].Locked {
				continue
			}
			ps, err := d.plan(coord, db.Name, &db.Tables[ti])
			if err != nil {
				return nil, fmt.Errorf("plan %s.%s: %w", db.Name, db.Tables[ti].Name, err)
			}
			for i, p := range ps {
				p.db, p.table, p.seq = di, ti, i
				parts = append(parts, d.name(schema, p))
			}
		}
	}
	d.total += sumEst(parts)
	if err := d.dumpAll(ctx, schema, parts); err != nil {
		return nil, err
	}
	all := append(locked, parts...)
	files := make([]archive.FileEntry, 0, len(all))
	for _, p := range all {
		t := &schema.Databases[p.db].Tables[p.table]
		t.Parts = append(t.Parts, p.path)
		t.Rows += p.rows
		files = append(files, p.file)
	}
	return files, nil
}

func (d *dumper) name(schema *Schema, p *part) *part {
	db := schema.Databases[p.db]
	p.path = fmt.Sprintf("data/%s/%s/%06d", url.PathEscape(db.Name), url.PathEscape(db.Tables[p.table].Name), p.seq)
	return p
}

func sumEst(ps []*part) int64 {
	var n int64
	for _, p := range ps {
		n += p.est
	}
	return n
}

// dumpAll dumps parts on the snapshot's connections, largest first: one
// worker per connection, the first failure stops the rest.
func (d *dumper) dumpAll(ctx context.Context, schema *Schema, parts []*part) error {
	order := append([]*part(nil), parts...)
	sort.SliceStable(order, func(i, j int) bool { return order[i].est > order[j].est })
	g, ctx := errgroup.WithContext(ctx)
	work := make(chan *part)
	g.Go(func() error {
		defer close(work)
		for _, p := range order {
			select {
			case work <- p:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		return nil
	})
	for _, c := range d.snap.workers {
		g.Go(func() error {
			for p := range work {
				if err := d.dump(ctx, c, schema, p); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// plan splits a table into primary-key ranges by the value of the key's
// first column, when that is an integer (a composite key's rows with one
// leading value stay in one range): ranges over other types would have to
// be compared in the column's collation. The first and last ranges are
// open, so rows outside the sampled bounds are never lost.
func (d *dumper) plan(coord *client.Conn, db string, t *Table) ([]*part, error) {
	whole := []*part{{est: t.estBytes}}
	if len(t.PrimaryKey) == 0 || t.estRows <= d.cfg.PartRows {
		return whole, nil
	}
	var kind ColumnKind
	for _, c := range t.Columns {
		if c.Name == t.PrimaryKey[0] {
			kind = c.Kind
		}
	}
	if kind != KindInt && kind != KindUint {
		return whole, nil
	}
	pk := QuoteIdent(t.PrimaryKey[0])
	r, err := coord.Execute(fmt.Sprintf("SELECT MIN(%s), MAX(%s) FROM %s.%s", pk, pk, QuoteIdent(db), QuoteIdent(t.Name)))
	if err != nil {
		return nil, err
	}
	if r.Values[0][0].Type == mysql.FieldValueTypeNull {
		return whole, nil
	}
	n := min((t.estRows+d.cfg.PartRows-1)/d.cfg.PartRows, 4096)
	var bounds []any
	if kind == KindUint {
		lo, hi := r.Values[0][0].AsUint64(), r.Values[0][1].AsUint64()
		step := (hi - lo) / uint64(n)
		for i := uint64(1); i < uint64(n) && step > 0; i++ {
			bounds = append(bounds, lo+i*step)
		}
	} else {
		lo, hi := r.Values[0][0].AsInt64(), r.Values[0][1].AsInt64()
		step := uint64(hi-lo) / uint64(n) // two's complement: hi-lo fits in uint64
		for i := uint64(1); i < uint64(n) && step > 0; i++ {
			bounds = append(bounds, int64(uint64(lo)+i*step))
		}
	}
	if len(bounds) == 0 {
		return whole, nil
	}
	parts := make([]*part, 0, len(bounds)+1)
	est := t.estBytes / int64(len(bounds)+1)
	parts = append(parts, &part{where: pk + " < ?", args: []any{bounds[0]}, est: est})
	for i := 1; i < len(bounds); i++ {
		parts = append(parts, &part{where: pk + " >= ? AND " + pk + " < ?", args: []any{bounds[i-1], bounds[i]}, est: est})
	}
	parts = append(parts, &part{where: pk + " >= ?", args: []any{bounds[len(bounds)-1]}, est: est})
	return parts, nil
}

// dump streams one part's rows through the row format into chunks.
func (d *dumper) dump(ctx context.Context, c *client.Conn, schema *Schema, p *part) error {
	db := schema.Databases[p.db]
	t := db.Tables[p.table]
	cols := make([]RowColumn, len(t.Columns))
	names := make([]string, len(t.Columns))
	for i, col := range t.Columns {
		cols[i] = RowColumn{Name: col.Name, Kind: col.Kind}
		names[i] = QuoteIdent(col.Name)
	}
	q := "SELECT " + strings.Join(names, ", ") + " FROM " + QuoteIdent(db.Name) + "." + QuoteIdent(t.Name)
	if p.where != "" {
		q += " WHERE " + p.where
	}
	if len(t.PrimaryKey) > 0 {
		// Key order makes the bytes of an unchanged table identical from
		// one backup to the next, so its chunks deduplicate.
		keys := make([]string, len(t.PrimaryKey))
		for i, k := range t.PrimaryKey {
			keys[i] = QuoteIdent(k)
		}
		q += " ORDER BY " + strings.Join(keys, ", ")
	}
	pr, pw := io.Pipe()
	type stored struct {
		refs []archive.ChunkRef
		err  error
	}
	res := make(chan stored, 1)
	go func() {
		refs, err := d.chunks.WriteFile(ctx, pr, archive.ContentDefined)
		pr.CloseWithError(err)
		res <- stored{refs, err}
	}()
	cw := &countingWriter{w: pw, progress: func(n int64) {
		done := d.done.Add(n)
		if d.cfg.Progress != nil {
			d.cfg.Progress(done, d.total)
		}
	}}
	rows, err := d.select1(ctx, c, q, p.args, cols, cw)
	pw.CloseWithError(err)
	out := <-res
	if err == nil {
		err = out.err
	}
	if err != nil {
		return fmt.Errorf("dump %s.%s part %d: %w", db.Name, t.Name, p.seq, err)
	}
	extra, _ := json.Marshal(PartExtra{Rows: rows})
	p.rows = rows
	p.file = archive.FileEntry{Path: p.path, Size: cw.n, Mode: 0o600, ModTime: d.snap.taken, Chunks: out.refs, Extra: extra}
	return nil
}

// select1 runs q over the binary protocol (values as the server's raw
// bytes and binary numbers) and writes its rows to w.
func (d *dumper) select1(ctx context.Context, c *client.Conn, q string, args []any, cols []RowColumn, w io.Writer) (int64, error) {
	rw, err := NewRowWriter(w, cols)
	if err != nil {
		return 0, err
	}
	stmt, err := c.Prepare(q)
	if err != nil {
		return 0, fmt.Errorf("prepare %s: %w", q, err)
	}
	defer stmt.Close()
	row := make(Row, len(cols))
	var result mysql.Result
	err = stmt.ExecuteSelectStreaming(&result, func(vals []mysql.FieldValue) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		for i := range cols {
			v, err := rowValue(&vals[i], cols[i].Kind)
			if err != nil {
				return fmt.Errorf("column %s: %w", cols[i].Name, err)
			}
			row[i] = v
		}
		return rw.Write(row)
	}, nil, args...)
	if err != nil {
		return 0, err
	}
	if err := rw.Close(); err != nil {
		return 0, err
	}
	return int64(rw.Rows()), nil
}

// rowValue converts a binary-protocol value to the row format's.
func rowValue(v *mysql.FieldValue, k ColumnKind) (any, error) {
	if v.Type == mysql.FieldValueTypeNull {
		return nil, nil
	}
	switch k {
	case KindInt:
		if v.Type == mysql.FieldValueTypeSigned {
			return v.AsInt64(), nil
		}
	case KindUint:
		switch v.Type {
		case mysql.FieldValueTypeUnsigned:
			return v.AsUint64(), nil
		case mysql.FieldValueTypeSigned: // YEAR arrives as a signed short
			if x := v.AsInt64(); x >= 0 {
				return uint64(x), nil
			}
		}
	case KindFloat32:
		if v.Type == mysql.FieldValueTypeFloat {
			return float32(v.AsFloat64()), nil // widened by the library: exact back
		}
	case KindFloat64:
		if v.Type == mysql.FieldValueTypeFloat {
			return v.AsFloat64(), nil
		}
	case KindBytes:
		if v.Type == mysql.FieldValueTypeString {
			return v.AsString(), nil // copied by RowWriter.Write before the next row
		}
	default:
		if v.Type == mysql.FieldValueTypeString {
			return string(v.AsString()), nil
		}
	}
	return nil, fmt.Errorf("server sent a %d value for a kind %d column", v.Type, k)
}

type countingWriter struct {
	w        io.Writer
	n        int64
	progress func(int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.progress(int64(n))
	return n, err
}
