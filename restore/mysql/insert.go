package mysql

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"

	mysqlbackup "github.com/tidemark/tidemark/basebackup/mysql"
)

// maxBatchParams stays under the protocol's 65535 placeholders, and
// maxBatchBytes well under the default max_allowed_packet. Narrow rows
// (sysbench's are ~190 bytes) go 8,000 to a statement, about as many as
// mydumper puts in its 1 MB statements: fewer round trips and statement
// executions than 1,000 rows each.
const (
	maxBatchRows   = 8000
	maxBatchParams = 65535
	maxBatchBytes  = 4 << 20
)

// insertLoader loads rows in multi-row prepared INSERTs: the binary
// protocol carries every value as its exact bytes or binary number. It
// needs nothing of the server beyond INSERT (no local_infile).
type insertLoader struct {
	c      *client.Conn
	j      loadJob
	ncols  int
	head   string
	tuple  string
	per    int
	enums  map[string]bool
	stmts  map[int]*client.Stmt
	args   []any
	nbytes int

	inTxn    bool
	txn      []sent // the open transaction's statements
	txnBytes int
}

func newInsertLoader(c *client.Conn, j loadJob, cols []mysqlbackup.RowColumn) *insertLoader {
	names := make([]string, len(cols))
	marks := make([]string, len(cols))
	for i, col := range cols {
		names[i] = mysqlbackup.QuoteIdent(col.Name)
		marks[i] = placeholder(j.table.Columns[i].DataType)
	}
	l := &insertLoader{c: c, j: j, ncols: len(cols), enums: enumColumns(j.table), stmts: map[int]*client.Stmt{},
		head:  "INSERT INTO " + tableName(j.db, j.table.Name) + " (" + strings.Join(names, ", ") + ") VALUES ",
		tuple: "(" + strings.Join(marks, ", ") + ")", per: min(maxBatchRows, maxBatchParams/len(cols))}
	if len(l.enums) > 0 {
		// The empty "error value" of an ENUM (index 0, stored by a
		// non-strict insert on the source) is refused in strict mode: such
		// tables load non-strict, and every warning is checked.
		l.head = "SET STATEMENT sql_mode = 'ALLOW_INVALID_DATES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION' FOR " + l.head
	}
	l.args = make([]any, 0, l.per*len(cols))
	return l
}

func (l *insertLoader) add(row mysqlbackup.Row) error {
	for _, v := range row {
		switch x := v.(type) {
		case []byte:
			l.nbytes += len(x)
		case string:
			l.nbytes += len(x)
		default:
			l.nbytes += 8
		}
		l.args = append(l.args, v)
	}
	if len(l.args)/l.ncols >= l.per || l.nbytes >= maxBatchBytes {
		return l.send()
	}
	return nil
}

// Statements are grouped into transactions of up to txnStatements or
// txnBytes (kept in memory to send again after a deadlock): a commit per
// 1,000-row statement made the target flush its redo log to disk ~1,500
// times per 1.5M rows.
const (
	txnStatements = 32
	txnBytes      = 8 << 20
)

// sent is a statement of the open transaction, kept to send it again.
type sent struct {
	st   *client.Stmt
	args []any
}

// send executes the batched rows inside the open transaction (beginning
// one if none is open) and commits once the transaction is big enough.
func (l *insertLoader) send() error {
	n := len(l.args) / l.ncols
	if n == 0 {
		return nil
	}
	st, ok := l.stmts[n]
	if !ok {
		var err error
		if st, err = l.c.Prepare(l.head + strings.TrimSuffix(strings.Repeat(l.tuple+", ", n), ", ")); err != nil {
			return fmt.Errorf("prepare insert into %s: %w", l.j.table.Name, err)
		}
		l.stmts[n] = st
	}
	s := sent{st: st, args: l.args}
	l.txnBytes += l.nbytes
	// A fresh slice: the open transaction keeps these values (row values
	// are allocated per row, never reused by the reader).
	l.args, l.nbytes = make([]any, 0, cap(l.args)), 0
	if err := l.exec(s); err != nil {
		return err
	}
	if len(l.txn) >= txnStatements || l.txnBytes >= txnBytes {
		return l.commit()
	}
	return nil
}

// exec runs s in the open transaction. Parallel loaders of one table's
// ranges can deadlock on InnoDB's gap locks: the loser's transaction is
// rolled back whole and sent again, statement by statement, so the rows
// arrive exactly once.
func (l *insertLoader) exec(s sent) error {
	err := l.begin()
	var r *mysql.Result
	if err == nil {
		r, err = s.st.Execute(s.args...)
	}
	for attempt := 1; err != nil && lockConflict(err) && attempt <= 8; attempt++ {
		l.rollback()
		time.Sleep(time.Duration(attempt*attempt) * 20 * time.Millisecond)
		if err = l.begin(); err != nil {
			break
		}
		for _, p := range l.txn {
			if _, err = p.st.Execute(p.args...); err != nil {
				break
			}
		}
		if err == nil {
			r, err = s.st.Execute(s.args...)
		}
	}
	if err != nil {
		return fmt.Errorf("insert into %s.%s: %w", l.j.db, l.j.table.Name, err)
	}
	l.txn = append(l.txn, s)
	if r.Warnings > 0 {
		return onlyEnumErrorValues(l.c, l.j, l.enums)
	}
	return nil
}

func (l *insertLoader) begin() error {
	if l.inTxn {
		return nil
	}
	if _, err := l.c.Execute("BEGIN"); err != nil {
		return err
	}
	l.inTxn = true
	return nil
}

func (l *insertLoader) rollback() {
	if l.inTxn {
		l.c.Execute("ROLLBACK")
		l.inTxn = false
	}
}

func (l *insertLoader) commit() error {
	if !l.inTxn {
		return nil
	}
	if _, err := l.c.Execute("COMMIT"); err != nil {
		return fmt.Errorf("insert into %s.%s: commit: %w", l.j.db, l.j.table.Name, err)
	}
	l.inTxn, l.txn, l.txnBytes = false, l.txn[:0], 0
	return nil
}

// flush sends what is batched and commits.
func (l *insertLoader) flush() error {
	if err := l.send(); err != nil {
		return err
	}
	return l.commit()
}

// close rolls back a transaction a failure left open and frees the
// statements.
func (l *insertLoader) close() {
	l.rollback()
	for _, s := range l.stmts {
		s.Close()
	}
}

// lockConflict: a deadlock or lock wait timeout, after which the server has
// rolled the statement back.
func lockConflict(err error) bool {
	var me *mysql.MyError
	return errors.As(err, &me) && (me.Code == mysql.ER_LOCK_DEADLOCK || me.Code == mysql.ER_LOCK_WAIT_TIMEOUT)
}
