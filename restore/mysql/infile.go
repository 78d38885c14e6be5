package mysql

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"

	mysqlbackup "github.com/tidemark/tidemark/basebackup/mysql"
)

// infileBatch is how much text one LOAD DATA statement carries: the
// client library holds a statement's data in memory.
const infileBatch = 8 << 20

// infileLoader loads rows with LOAD DATA LOCAL INFILE, the server's
// fastest path for rows from a client: rows become tab-separated text with
// MySQL's escapes, in the binary character set so string bytes pass
// unchanged.
type infileLoader struct {
	c     *client.Conn
	j     loadJob
	cols  []mysqlbackup.RowColumn
	enums map[string]bool
	stmt  string
	buf   bytes.Buffer
	num   []byte
}

func newInfileLoader(c *client.Conn, j loadJob, cols []mysqlbackup.RowColumn) *infileLoader {
	names := make([]string, len(cols))
	var sets []string
	for i, col := range cols {
		names[i] = mysqlbackup.QuoteIdent(col.Name)
		if placeholder(j.table.Columns[i].DataType) != "?" {
			// Text forms the binary character set would not parse.
			v := fmt.Sprintf("@c%d", i)
			sets = append(sets, names[i]+" = "+strings.Replace(placeholder(j.table.Columns[i].DataType), "?", v, 1))
			names[i] = v
		}
	}
	stmt := "LOAD DATA LOCAL INFILE 'tidemark' INTO TABLE " + tableName(j.db, j.table.Name) +
		" CHARACTER SET binary FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' (" + strings.Join(names, ", ") + ")"
	if len(sets) > 0 {
		stmt += " SET " + strings.Join(sets, ", ")
	}
	return &infileLoader{c: c, j: j, cols: cols, enums: enumColumns(j.table), stmt: stmt}
}

// add appends a row; it sends a batch when enough text is buffered.
func (l *infileLoader) add(row mysqlbackup.Row) error {
	for i, v := range row {
		if i > 0 {
			l.buf.WriteByte('\t')
		}
		switch x := v.(type) {
		case nil:
			l.buf.WriteString(`\N`)
		case int64:
			l.buf.Write(strconv.AppendInt(l.num[:0], x, 10))
		case uint64:
			if x < 1000 && l.j.table.Columns[i].DataType == "year" {
				// As text, YEAR '0' means 2000 and '69' 2069: zero-pad to
				// four digits so the year is taken as written.
				fmt.Fprintf(&l.buf, "%04d", x)
				continue
			}
			l.buf.Write(strconv.AppendUint(l.num[:0], x, 10))
		case float32:
			// The exact double value of the float: the server parses it as
			// a double and narrows it back without rounding.
			l.buf.Write(strconv.AppendFloat(l.num[:0], float64(x), 'g', -1, 64))
		case float64:
			if math.IsInf(x, 0) || math.IsNaN(x) {
				return fmt.Errorf("column %s: %v cannot be stored", l.cols[i].Name, x)
			}
			l.buf.Write(strconv.AppendFloat(l.num[:0], x, 'g', -1, 64))
		case []byte:
			escape(&l.buf, x)
		case string:
			l.buf.WriteString(x)
		default:
			return fmt.Errorf("column %s: unexpected %T", l.cols[i].Name, v)
		}
	}
	l.buf.WriteByte('\n')
	if l.buf.Len() >= infileBatch {
		return l.flush()
	}
	return nil
}

// escape writes v with LOAD DATA's escapes for the bytes that would end or
// change a field (backslash, tab, newline, NUL). Most values hold none of
// them: four vectorised scans find that faster than a byte loop (the loop
// was a quarter of the client's CPU on sysbench rows).
func escape(b *bytes.Buffer, v []byte) {
	if bytes.IndexByte(v, '\\') < 0 && bytes.IndexByte(v, '\t') < 0 && bytes.IndexByte(v, '\n') < 0 && bytes.IndexByte(v, 0) < 0 {
		b.Write(v)
		return
	}
	start := 0
	for i, c := range v {
		var e byte
		switch c {
		case '\\':
			e = '\\'
		case '\t':
			e = 't'
		case '\n':
			e = 'n'
		case 0:
			e = '0'
		default:
			continue
		}
		b.Write(v[start:i])
		b.WriteByte('\\')
		b.WriteByte(e)
		start = i + 1
	}
	b.Write(v[start:])
}

func (l *infileLoader) close() {}

// flush sends the buffered rows as one LOAD DATA statement. LOCAL turns
// data errors into warnings (the server cannot stop the upload), so every
// warning is checked as for inserts.
func (l *infileLoader) flush() error {
	if l.buf.Len() == 0 {
		return nil
	}
	load := func() (*mysql.Result, error) {
		return l.c.ExecQueryRelayLocalInfile(l.stmt, func([]byte) (io.Reader, error) {
			return bytes.NewReader(l.buf.Bytes()), nil
		})
	}
	r, err := load()
	for attempt := 1; err != nil && lockConflict(err) && attempt <= 8; attempt++ { // as for inserts
		time.Sleep(time.Duration(attempt*attempt) * 20 * time.Millisecond)
		r, err = load()
	}
	l.buf.Reset()
	if err != nil {
		return fmt.Errorf("load data into %s.%s: %w", l.j.db, l.j.table.Name, err)
	}
	if r.Warnings > 0 {
		return onlyEnumErrorValues(l.c, l.j, l.enums)
	}
	return nil
}
