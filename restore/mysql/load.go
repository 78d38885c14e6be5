package mysql

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"golang.org/x/sync/errgroup"

	"github.com/tidemark/tidemark/archive"
	mysqlbackup "github.com/tidemark/tidemark/basebackup/mysql"
	"github.com/tidemark/tidemark/binlog"
)

// loadSession prepares a connection for loading rows exactly as stored:
// raw bytes (binary character set), UTC for TIMESTAMP, zero dates and
// zero auto-increment values kept, no checks the source already made —
// and strict, so a value the target would alter is an error, never a
// silently different row.
var loadSession = []string{
	"SET NAMES binary",
	"SET SESSION time_zone = '+00:00'",
	"SET SESSION sql_mode = 'STRICT_ALL_TABLES,ALLOW_INVALID_DATES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
	"SET SESSION foreign_key_checks = 0",
	"SET SESSION unique_checks = 0",
}

// ddlSession is for definitions: SHOW CREATE text is UTF-8.
var ddlSession = []string{
	"SET NAMES utf8mb4",
	"SET SESSION time_zone = '+00:00'",
	"SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
	"SET SESSION foreign_key_checks = 0",
}

func connectWith(ctx context.Context, srv binlog.Source, setup []string, options ...client.Option) (*client.Conn, error) {
	c, err := mysqlbackup.ConnectRaw(ctx, srv, options...)
	if err != nil {
		return nil, err
	}
	for _, q := range setup {
		if _, err := c.Execute(q); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	return c, nil
}

// selectDatabases narrows the schema to the requested databases.
func selectDatabases(s *mysqlbackup.Schema, only []string) error {
	if len(only) == 0 {
		return nil
	}
	var keep []mysqlbackup.Database
	for _, o := range only {
		found := false
		for _, db := range s.Databases {
			if db.Name == o {
				keep, found = append(keep, db), true
			}
		}
		if !found {
			return fmt.Errorf("database %q is not in the backup", o)
		}
	}
	s.Databases = keep
	return nil
}

// createTables creates databases and tables; it returns, per table, the
// secondary indexes left to add after the load. Indexes are deferred only
// for tables larger than a quarter of the target's buffer pool: measured
// on 400,000 rows (75 MB) with three secondary indexes that fit in memory,
// building them afterwards was 10-20% slower than maintaining them row by
// row; once they outgrow memory, row-by-row maintenance turns into random
// I/O and a sorted build afterwards wins.
func createTables(c *client.Conn, s *mysqlbackup.Schema, files map[string]archive.FileEntry, deferAbove int64, existing map[string]bool) (map[string][]string, error) {
	deferred := map[string][]string{}
	if deferAbove <= 0 {
		r, err := c.Execute("SELECT @@innodb_buffer_pool_size")
		if err != nil {
			return nil, fmt.Errorf("read the target's buffer pool size: %w", err)
		}
		pool, _ := r.GetInt(0, 0)
		deferAbove = int64(pool / 4)
	}
	for _, db := range s.Databases {
		if !existing[db.Name] {
			if _, err := c.Execute(db.Create); err != nil {
				return nil, fmt.Errorf("create database %s: %w", db.Name, err)
			}
		}
		if err := c.UseDB(db.Name); err != nil {
			return nil, fmt.Errorf("use %s: %w", db.Name, err)
		}
		for _, t := range db.Tables {
			var size int64
			for _, p := range t.Parts {
				size += files[p].Size
			}
			base, keys := splitSecondaryKeys(t.Create)
			if len(keys) > 0 && size > deferAbove {
				if _, err := c.Execute(base); err == nil {
					deferred[tableName(db.Name, t.Name)] = keys
					continue
				}
				// The reduced definition is not valid (an auto-increment
				// column keyed only by a secondary index): create it whole.
			}
			if _, err := c.Execute(t.Create); err != nil {
				return nil, fmt.Errorf("create table %s.%s: %w", db.Name, t.Name, err)
			}
		}
	}
	return deferred, nil
}

func tableName(db, t string) string {
	return mysqlbackup.QuoteIdent(db) + "." + mysqlbackup.QuoteIdent(t)
}

// splitSecondaryKeys removes secondary indexes from a CREATE TABLE so they
// are built once, sorted, after the load instead of row by row. Tables
// without a primary key (their clustered index may be a unique key) and
// tables with foreign keys (which need their indexes) are left whole.
func splitSecondaryKeys(create string) (string, []string) {
	if strings.Contains(create, "FOREIGN KEY") || !strings.Contains(create, "\n  PRIMARY KEY ") {
		return create, nil
	}
	lines := strings.Split(create, "\n")
	var kept, keys []string
	for _, l := range lines {
		t := strings.TrimSuffix(strings.TrimPrefix(l, "  "), ",")
		if strings.HasPrefix(l, "  ") && (strings.HasPrefix(t, "KEY ") || strings.HasPrefix(t, "UNIQUE KEY ") ||
			strings.HasPrefix(t, "FULLTEXT KEY ") || strings.HasPrefix(t, "SPATIAL KEY ")) {
			keys = append(keys, "ADD "+t)
			continue
		}
		kept = append(kept, l)
	}
	if len(keys) == 0 {
		return create, nil
	}
	// The last definition line before ") ENGINE=…" must lose its comma.
	for i := len(kept) - 1; i > 0; i-- {
		if strings.HasPrefix(kept[i], ")") {
			kept[i-1] = strings.TrimSuffix(kept[i-1], ",")
			break
		}
	}
	return strings.Join(kept, "\n"), keys
}

// loader loads table parts on several connections.
type loader struct {
	cfg   Config
	srv   binlog.Source
	files map[string]archive.FileEntry
	done  atomic.Int64
	total int64
}

type loadJob struct {
	db    string
	table *mysqlbackup.Table
	file  archive.FileEntry
}

func (l *loader) run(ctx context.Context, s *mysqlbackup.Schema) error {
	var jobs []loadJob
	for _, db := range s.Databases {
		for ti := range db.Tables {
			t := &db.Tables[ti]
			for _, p := range t.Parts {
				f, ok := l.files[p]
				if !ok {
					return fmt.Errorf("%w: table %s.%s: part %s is not in the backup", archive.ErrCorrupt, db.Name, t.Name, p)
				}
				jobs = append(jobs, loadJob{db: db.Name, table: t, file: f})
				l.total += f.Size
			}
		}
	}
	return parallel(ctx, l.cfg.Jobs, len(jobs), func(ctx context.Context, c *client.Conn, i int) error {
		return l.load(ctx, c, jobs[i])
	}, func(ctx context.Context) (*client.Conn, error) {
		c, err := connectWith(ctx, l.srv, loadSession, func(c *client.Conn) error {
			if l.cfg.LoadMethod == LoadInfile {
				return c.SetCapability(mysql.CLIENT_LOCAL_FILES)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		// The base is restored as it was, not replicated onward; servers
		// without the privilege still load, only slower.
		if _, err := c.Execute("SET SESSION sql_log_bin = 0"); err != nil {
			l.cfg.Log.Debug("loading with binary logging on", "err", err)
		}
		return c, nil
	})
}

// parallel runs n tasks on up to jobs connections, each opened by dial in
// its worker; the first failure stops the rest.
func parallel(ctx context.Context, jobs, n int, task func(context.Context, *client.Conn, int) error, dial func(context.Context) (*client.Conn, error)) error {
	g, ctx := errgroup.WithContext(ctx)
	next := make(chan int)
	g.Go(func() error {
		defer close(next)
		for i := range n {
			select {
			case next <- i:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		return nil
	})
	for range min(jobs, n) {
		g.Go(func() error {
			c, err := dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			for i := range next {
				if err := task(ctx, c, i); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// rowSink sends rows to the target in batches.
type rowSink interface {
	add(mysqlbackup.Row) error
	flush() error
	close()
}

// load reads one part's row stream from the repository and sends it to the
// target by the configured method.
func (l *loader) load(ctx context.Context, c *client.Conn, j loadJob) error {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(l.cfg.Repo.RestoreFile(ctx, j.file, pw, 2))
	}()
	defer pr.Close()
	rr, err := mysqlbackup.NewRowReader(pr)
	if err != nil {
		return fmt.Errorf("%s: %w", j.file.Path, err)
	}
	cols := rr.Columns()
	if err := sameColumns(cols, j.table.Columns); err != nil {
		return fmt.Errorf("%s: %w: %v", j.file.Path, archive.ErrCorrupt, err)
	}
	var sink rowSink
	if l.cfg.LoadMethod == LoadInfile {
		sink = newInfileLoader(c, j, cols)
	} else {
		sink = newInsertLoader(c, j, cols)
	}
	defer sink.close()
	var (
		rows int64
		row  mysqlbackup.Row
	)
	for {
		row, err = rr.Next(row[:0])
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w: %v", j.file.Path, archive.ErrCorrupt, err)
		}
		rows++
		if err := sink.add(row); err != nil {
			return err
		}
	}
	if err := sink.flush(); err != nil {
		return err
	}
	var want mysqlbackup.PartExtra
	if json.Unmarshal(j.file.Extra, &want) == nil && want.Rows != rows {
		return fmt.Errorf("%s: %w: %d rows, the manifest says %d", j.file.Path, archive.ErrCorrupt, rows, want.Rows)
	}
	done := l.done.Add(j.file.Size)
	if l.cfg.Progress != nil {
		l.cfg.Progress(done, l.total)
	}
	return nil
}

func enumColumns(t *mysqlbackup.Table) map[string]bool {
	m := map[string]bool{}
	for _, c := range t.Columns {
		if c.DataType == "enum" {
			m[c.Name] = true
		}
	}
	return m
}

// onlyEnumErrorValues accepts the warnings of an insert only when each is
// an ENUM column's empty error value: the table was created from the
// source's definition, so no other value can be truncated.
func onlyEnumErrorValues(c *client.Conn, j loadJob, enums map[string]bool) error {
	r, err := c.Execute("SHOW WARNINGS")
	if err != nil {
		return fmt.Errorf("insert into %s.%s: read warnings: %w", j.db, j.table.Name, err)
	}
	for i := range r.RowNumber() {
		code, _ := r.GetInt(i, 1)
		msg, _ := r.GetString(i, 2)
		col, _, _ := strings.Cut(strings.TrimPrefix(msg, "Data truncated for column '"), "'")
		if code != 1265 || !enums[col] {
			return fmt.Errorf("insert into %s.%s: the target changed a value: %s", j.db, j.table.Name, msg)
		}
	}
	return nil
}

// placeholder is the value expression for a column: UUID and INET types
// arrive in their text form, which a binary string would not be parsed as.
func placeholder(dataType string) string {
	switch dataType {
	case "uuid", "inet6", "inet4":
		return "CONVERT(? USING utf8mb4)"
	}
	return "?"
}

func sameColumns(got []mysqlbackup.RowColumn, want []mysqlbackup.Column) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d columns, the schema has %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Name != want[i].Name || got[i].Kind != want[i].Kind {
			return fmt.Errorf("column %d is %s (kind %d), the schema says %s (kind %d)", i, got[i].Name, got[i].Kind, want[i].Name, want[i].Kind)
		}
	}
	return nil
}

// addKeys builds the deferred secondary indexes, one table per connection.
func addKeys(ctx context.Context, jobs int, srv binlog.Source, deferred map[string][]string) error {
	var tables []string
	for t := range deferred {
		tables = append(tables, t)
	}
	return parallel(ctx, jobs, len(tables), func(ctx context.Context, c *client.Conn, i int) error {
		q := "ALTER TABLE " + tables[i] + " " + strings.Join(deferred[tables[i]], ", ")
		if _, err := c.Execute(q); err != nil {
			return fmt.Errorf("add indexes to %s: %w", tables[i], err)
		}
		return nil
	}, func(ctx context.Context) (*client.Conn, error) { return connectWith(ctx, srv, ddlSession) })
}
