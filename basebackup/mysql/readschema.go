package mysql

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
)

// hasLocked reports whether any table is non-transactional.
func (s *Schema) hasLocked() bool {
	for _, db := range s.Databases {
		for _, t := range db.Tables {
			if t.Locked {
				return true
			}
		}
	}
	return false
}

// systemSchemas are never backed up as data.
var systemSchemas = []string{"mysql", "information_schema", "performance_schema", "sys"}

// readSchema reads the definitions of the selected databases. It runs with
// DDL blocked, so the definitions match the snapshot taken right after.
func readSchema(c *client.Conn, only []string, withUsers bool, log *slog.Logger) (*Schema, error) {
	rows, err := query(c, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME")
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	var names []string
	for _, r := range rows {
		n := string(r["SCHEMA_NAME"])
		if !slices.Contains(systemSchemas, n) && (len(only) == 0 || slices.Contains(only, n)) {
			names = append(names, n)
		}
	}
	for _, o := range only {
		if !slices.Contains(names, o) {
			return nil, fmt.Errorf("database %q: not on the server (or a system schema)", o)
		}
	}
	s := &Schema{}
	for _, n := range names {
		db, err := readDatabase(c, n)
		if err != nil {
			return nil, fmt.Errorf("database %s: %w", n, err)
		}
		s.Databases = append(s.Databases, *db)
	}
	if withUsers {
		if s.Users, err = readUsers(c, log); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func readDatabase(c *client.Conn, name string) (*Database, error) {
	db := &Database{Name: name}
	r, err := query(c, "SHOW CREATE DATABASE "+QuoteIdent(name))
	if err != nil || len(r) != 1 {
		return nil, fmt.Errorf("SHOW CREATE DATABASE: %v", err)
	}
	db.Create = string(r[0]["Create Database"])
	tables, err := query(c, "SELECT TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_ROWS, DATA_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME", name)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		tn, typ, engine := string(t["TABLE_NAME"]), string(t["TABLE_TYPE"]), string(t["ENGINE"])
		switch typ {
		case "VIEW":
			v, err := readObject(c, "VIEW", name, tn)
			if err != nil {
				return nil, err
			}
			db.Views = append(db.Views, *v)
			continue
		case "BASE TABLE":
		default:
			return nil, fmt.Errorf("table %s is a %s, which base backups do not support yet", tn, typ)
		}
		locked := false
		switch strings.ToLower(engine) {
		case "innodb":
		case "myisam", "aria", "memory", "csv", "archive":
			// Not in the transactional snapshot: copied while writes to
			// them are blocked, which lengthens the lock.
			locked = true
		default:
			return nil, fmt.Errorf("table %s uses the engine %s, which base backups cannot copy consistently with the binlog position; leave its database out with --databases", tn, engine)
		}
		tb, err := readTable(c, name, tn)
		if err != nil {
			return nil, fmt.Errorf("table %s: %w", tn, err)
		}
		tb.Engine, tb.Locked = engine, locked
		tb.estRows, _ = strconv.ParseInt(string(t["TABLE_ROWS"]), 10, 64)
		tb.estBytes, _ = strconv.ParseInt(string(t["DATA_LENGTH"]), 10, 64)
		db.Tables = append(db.Tables, *tb)
	}
	routines, err := query(c, "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? ORDER BY ROUTINE_TYPE, ROUTINE_NAME", name)
	if err != nil {
		return nil, fmt.Errorf("list routines: %w", err)
	}
	for _, rt := range routines {
		typ := string(rt["ROUTINE_TYPE"])
		if typ != "PROCEDURE" && typ != "FUNCTION" {
			return nil, fmt.Errorf("routine %s is a %s, which base backups do not support yet", rt["ROUTINE_NAME"], typ)
		}
		o, err := readObject(c, typ, name, string(rt["ROUTINE_NAME"]))
		if err != nil {
			return nil, err
		}
		db.Routines = append(db.Routines, *o)
	}
	if err := checkHidden(c, name); err != nil {
		return nil, err
	}
	triggers, err := query(c, "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY EVENT_OBJECT_TABLE, ACTION_ORDER", name)
	if err != nil {
		return nil, fmt.Errorf("list triggers: %w", err)
	}
	for _, tr := range triggers {
		o, err := readObject(c, "TRIGGER", name, string(tr["TRIGGER_NAME"]))
		if err != nil {
			return nil, err
		}
		db.Triggers = append(db.Triggers, *o)
	}
	events, err := query(c, "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? ORDER BY EVENT_NAME", name)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	for _, ev := range events {
		o, err := readObject(c, "EVENT", name, string(ev["EVENT_NAME"]))
		if err != nil {
			return nil, err
		}
		db.Events = append(db.Events, *o)
	}
	return db, nil
}

func readTable(c *client.Conn, db, name string) (*Table, error) {
	t := &Table{Name: name}
	fq := QuoteIdent(db) + "." + QuoteIdent(name)
	r, err := query(c, "SHOW CREATE TABLE "+fq)
	if err != nil || len(r) != 1 {
		return nil, fmt.Errorf("SHOW CREATE TABLE: %v", err)
	}
	t.Create = string(r[0]["Create Table"])
	cols, err := query(c, "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_GENERATED FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION", db, name)
	if err != nil {
		return nil, fmt.Errorf("columns: %w", err)
	}
	for _, col := range cols {
		if string(col["IS_GENERATED"]) == "ALWAYS" {
			continue
		}
		dt := strings.ToLower(string(col["DATA_TYPE"]))
		k, err := columnKind(dt, strings.Contains(strings.ToLower(string(col["COLUMN_TYPE"])), "unsigned"))
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", col["COLUMN_NAME"], err)
		}
		t.Columns = append(t.Columns, Column{Name: string(col["COLUMN_NAME"]), DataType: dt, Kind: k})
	}
	if len(t.Columns) == 0 {
		return nil, fmt.Errorf("no stored columns")
	}
	pk, err := query(c, "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX", db, name)
	if err != nil {
		return nil, fmt.Errorf("primary key: %w", err)
	}
	for _, p := range pk {
		t.PrimaryKey = append(t.PrimaryKey, string(p["COLUMN_NAME"]))
	}
	return t, nil
}

// columnKind maps a column's type to how its values are stored.
func columnKind(dataType string, unsigned bool) (ColumnKind, error) {
	switch dataType {
	case "tinyint", "smallint", "mediumint", "int", "bigint":
		if unsigned {
			return KindUint, nil
		}
		return KindInt, nil
	case "year":
		return KindUint, nil
	case "float":
		return KindFloat32, nil
	case "double", "real", "double precision":
		return KindFloat64, nil
	case "date":
		return KindDate, nil
	case "datetime", "timestamp":
		return KindDateTime, nil
	case "time":
		return KindTime, nil
	case "decimal", "numeric", "bit", "char", "varchar", "binary", "varbinary", "tinytext", "text", "mediumtext", "longtext",
		"tinyblob", "blob", "mediumblob", "longblob", "enum", "set", "json", "geometry", "point", "linestring", "polygon",
		"multipoint", "multilinestring", "multipolygon", "geometrycollection", "inet6", "inet4", "uuid":
		return KindBytes, nil
	}
	return 0, fmt.Errorf("type %s is not supported by base backups yet", dataType)
}

// readObject reads a view, routine, trigger or event with its settings.
func readObject(c *client.Conn, kind, db, name string) (*Object, error) {
	show := kind
	if kind == "VIEW" {
		show = "TABLE" // SHOW CREATE TABLE on a view gives the same, with the view's charset columns
	}
	r, err := query(c, "SHOW CREATE "+show+" "+QuoteIdent(db)+"."+QuoteIdent(name))
	if err != nil || len(r) != 1 {
		return nil, fmt.Errorf("SHOW CREATE %s %s: %v", kind, name, err)
	}
	row := r[0]
	o := &Object{Name: name, SQLMode: string(row["sql_mode"]), TimeZone: string(row["time_zone"]),
		CharsetClient: string(row["character_set_client"]), CollationConnection: string(row["collation_connection"]),
		DatabaseCollation: string(row["Database Collation"])}
	if kind == "PROCEDURE" || kind == "FUNCTION" {
		o.Type = kind
	}
	for _, col := range []string{"Create View", "Create Procedure", "Create Function", "SQL Original Statement", "Create Event"} {
		if v, ok := row[col]; ok {
			o.Create = string(v)
		}
	}
	if o.Create == "" {
		return nil, fmt.Errorf("SHOW CREATE %s %s: no definition returned (missing privileges?)", kind, name)
	}
	return o, nil
}

// readUsers returns CREATE USER and GRANT statements for every account but
// MariaDB's internal ones.
func readUsers(c *client.Conn, log *slog.Logger) ([]string, error) {
	users, err := query(c, "SELECT User, Host FROM mysql.user WHERE is_role = 'N' AND User NOT IN ('mariadb.sys', 'mysql.sys', 'mysql.session', 'mysql.infoschema') ORDER BY User, Host")
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	var out []string
	for _, u := range users {
		acct := "'" + strings.ReplaceAll(string(u["User"]), "'", "''") + "'@'" + strings.ReplaceAll(string(u["Host"]), "'", "''") + "'"
		cr, err := query(c, "SHOW CREATE USER "+acct)
		var merr *mysql.MyError
		if errors.As(err, &merr) && merr.Code == mysql.ER_PASSWORD_NO_MATCH {
			// In mysql.user but not loaded: a host name under
			// skip-name-resolve. Nobody can log in with it.
			log.Warn("account not backed up: the server ignores it (a host name with skip-name-resolve?)", "account", acct)
			continue
		}
		if err != nil || len(cr) != 1 {
			return nil, fmt.Errorf("SHOW CREATE USER %s: %v", acct, err)
		}
		for _, v := range cr[0] {
			stmt := string(v)
			if rest, ok := strings.CutPrefix(stmt, "CREATE USER "); ok {
				stmt = "CREATE USER IF NOT EXISTS " + rest
			}
			out = append(out, stmt)
		}
		gr, err := query(c, "SHOW GRANTS FOR "+acct)
		if err != nil {
			return nil, fmt.Errorf("SHOW GRANTS FOR %s: %w", acct, err)
		}
		for _, g := range gr {
			for _, v := range g {
				out = append(out, string(v))
			}
		}
	}
	return out, nil
}
