package mysql

import (
	"fmt"
	"strings"

	"github.com/go-mysql-org/go-mysql/client"

	mysqlbackup "github.com/tidemark/tidemark/basebackup/mysql"
)

// createUsers runs the backup's CREATE USER IF NOT EXISTS statements
// (before any object that names a definer), or with grants its GRANT
// statements (after the objects they name exist).
func createUsers(c *client.Conn, s *mysqlbackup.Schema, grants bool) error {
	for _, stmt := range s.Users {
		if strings.HasPrefix(stmt, "CREATE USER ") == grants {
			continue
		}
		if _, err := c.Execute(stmt); err != nil {
			return fmt.Errorf("restore users: %s: %w", firstWords(stmt), err)
		}
	}
	return nil
}

// createObjects recreates views, routines, triggers and events after the
// data is in (triggers must not fire on restored rows), each under the SQL
// mode, time zone and connection collation it was defined with.
func createObjects(c *client.Conn, s *mysqlbackup.Schema) error {
	for _, db := range s.Databases {
		if err := c.UseDB(db.Name); err != nil {
			return fmt.Errorf("use %s: %w", db.Name, err)
		}
		if err := createViews(c, db); err != nil {
			return err
		}
		for _, group := range []struct {
			what string
			objs []mysqlbackup.Object
		}{{"routine", db.Routines}, {"trigger", db.Triggers}, {"event", db.Events}} {
			for _, o := range group.objs {
				if err := createObject(c, o, true); err != nil {
					return fmt.Errorf("create %s %s.%s: %w", group.what, db.Name, o.Name, err)
				}
			}
		}
	}
	_, err := c.Execute("SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'")
	return err
}

// createViews creates views in dependency order by retrying those whose
// referenced views do not exist yet, until a round makes no progress.
func createViews(c *client.Conn, db mysqlbackup.Database) error {
	pending := db.Views
	for len(pending) > 0 {
		var failed []mysqlbackup.Object
		var lastErr error
		for _, v := range pending {
			if err := createObject(c, v, false); err != nil {
				failed, lastErr = append(failed, v), fmt.Errorf("create view %s.%s: %w", db.Name, v.Name, err)
			}
		}
		if len(failed) == len(pending) {
			return lastErr
		}
		pending = failed
	}
	return nil
}

// withMode: routines, triggers and events carry their SQL mode (views do not).
func createObject(c *client.Conn, o mysqlbackup.Object, withMode bool) error {
	// The definition text is UTF-8 (it came through SHOW CREATE); the
	// connection collation gives its literals their original collation.
	setup := []string{"SET NAMES utf8mb4"}
	if o.CollationConnection != "" {
		setup = append(setup, "SET SESSION collation_connection = '"+sqlString(o.CollationConnection)+"'")
	}
	if withMode {
		setup = append(setup, "SET SESSION sql_mode = '"+sqlString(o.SQLMode)+"'")
	}
	if o.TimeZone != "" {
		setup = append(setup, "SET SESSION time_zone = '"+sqlString(o.TimeZone)+"'")
	}
	for _, q := range setup {
		if _, err := c.Execute(q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	if _, err := c.Execute(o.Create); err != nil {
		return err
	}
	_, err := c.Execute("SET SESSION time_zone = '+00:00'")
	return err
}

func sqlString(s string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s)
}

// firstWords names a statement in an error without its secrets (CREATE
// USER carries password hashes).
func firstWords(s string) string {
	f := strings.Fields(s)
	return strings.Join(f[:min(len(f), 3)], " ")
}
