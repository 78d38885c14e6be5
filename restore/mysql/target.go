package mysql

import (
	"fmt"
	"strings"

	"github.com/go-mysql-org/go-mysql/client"

	mysqlbackup "github.com/tidemark/tidemark/basebackup/mysql"
	"github.com/tidemark/tidemark/restore"
)

// conflict is an object on the target that the restore would create.
type conflict struct {
	db, name, kind string // kind: TABLE, VIEW, PROCEDURE, FUNCTION, TRIGGER, EVENT
}

func (c conflict) String() string {
	return fmt.Sprintf("%s %s.%s", strings.ToLower(c.kind), c.db, c.name)
}

// checkTarget refuses a restore that would create or overwrite objects the
// target already holds, naming them; with force it drops exactly those.
// An existing database is not data by itself: every default MariaDB
// install has an empty `test` database, and a database holding only other
// tables is left as it is. It returns the databases that already exist,
// which the restore must not create again.
func checkTarget(c *client.Conn, s *mysqlbackup.Schema, force bool) (map[string]bool, error) {
	existing := map[string]bool{}
	var found []conflict
	for _, db := range s.Databases {
		r, err := c.Execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", db.Name)
		if err != nil {
			return nil, fmt.Errorf("check target database %s: %w", db.Name, err)
		}
		if r.RowNumber() == 0 {
			continue
		}
		existing[db.Name] = true
		cs, err := conflicts(c, db)
		if err != nil {
			return nil, err
		}
		found = append(found, cs...)
	}
	if len(found) == 0 {
		return existing, nil
	}
	if !force {
		names := make([]string, len(found))
		for i, f := range found {
			names[i] = f.String()
		}
		return nil, fmt.Errorf("%w: %s (drop them, choose --databases, or use --force to drop and replace them)",
			restore.ErrTargetExists, strings.Join(names, ", "))
	}
	for _, f := range found {
		// IF EXISTS: dropping a table has dropped its triggers.
		q := fmt.Sprintf("DROP %s IF EXISTS %s.%s", f.kind, mysqlbackup.QuoteIdent(f.db), mysqlbackup.QuoteIdent(f.name))
		if _, err := c.Execute(q); err != nil {
			return nil, fmt.Errorf("drop %s (--force): %w", f, err)
		}
	}
	return existing, nil
}

// conflicts lists db's objects on the target that the backup also holds.
func conflicts(c *client.Conn, db mysqlbackup.Database) ([]conflict, error) {
	want := map[string]bool{} // kind/name the restore creates
	for _, t := range db.Tables {
		want["TABLE/"+t.Name] = true
	}
	for _, v := range db.Views {
		want["VIEW/"+v.Name] = true
	}
	for _, r := range db.Routines {
		want[strings.ToUpper(r.Type)+"/"+r.Name] = true
	}
	for _, t := range db.Triggers {
		want["TRIGGER/"+t.Name] = true
	}
	for _, e := range db.Events {
		want["EVENT/"+e.Name] = true
	}
	var out []conflict
	for _, q := range []string{
		// A view and a table share one namespace: either kind blocks both.
		"SELECT TABLE_NAME, IF(TABLE_TYPE = 'VIEW', 'VIEW', 'TABLE') FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY 1",
		"SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? ORDER BY 1",
		"SELECT TRIGGER_NAME, 'TRIGGER' FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY 1",
		"SELECT EVENT_NAME, 'EVENT' FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? ORDER BY 1",
	} {
		r, err := c.Execute(q, db.Name)
		if err != nil {
			return nil, fmt.Errorf("check target database %s: %w", db.Name, err)
		}
		for i := range r.RowNumber() {
			name, _ := r.GetString(i, 0)
			kind, _ := r.GetString(i, 1)
			hit := want[kind+"/"+name]
			if kind == "TABLE" || kind == "VIEW" {
				hit = want["TABLE/"+name] || want["VIEW/"+name]
			}
			if hit {
				out = append(out, conflict{db: db.Name, name: name, kind: kind})
			}
		}
	}
	return out, nil
}
