package mysql

import (
	"fmt"

	"github.com/go-mysql-org/go-mysql/client"
)

// grantee is the current account as information_schema names grantees:
// 'user'@'host'.
const grantee = `CONCAT("'", SUBSTRING_INDEX(CURRENT_USER(), '@', 1), "'@'", SUBSTRING_INDEX(CURRENT_USER(), '@', -1), "'")`

// checkHidden refuses a database whose triggers or events the backup user
// cannot see. information_schema does not refuse a user without the
// TRIGGER or EVENT privilege: it lists nothing, so the backup would leave
// those objects out silently.
func checkHidden(c *client.Conn, db string) error {
	// Events live in mysql.event, which SELECT reads whatever EVENT says.
	all, err := query(c, "SELECT COUNT(*) AS n FROM mysql.event WHERE db = ?", db)
	if err != nil {
		return fmt.Errorf("count events: %w", err)
	}
	seen, err := query(c, "SELECT COUNT(*) AS n FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?", db)
	if err != nil {
		return fmt.Errorf("count events: %w", err)
	}
	if string(all[0]["n"]) != string(seen[0]["n"]) {
		return fmt.Errorf("%s events exist but the backup user sees %s: it needs the EVENT privilege (GRANT EVENT ON *.*, see docs/setup-mysql.md), else they would be left out", all[0]["n"], seen[0]["n"])
	}
	// Triggers have no table of their own to count: the privilege itself
	// is checked, globally or on the database.
	// With SELECT on mysql.*, these views list every account: only the
	// backup user's own rows count.
	held, err := query(c, `SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE = 'TRIGGER' AND GRANTEE = `+grantee+`
		UNION SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE PRIVILEGE_TYPE = 'TRIGGER' AND GRANTEE = `+grantee+` AND TABLE_SCHEMA = ?`, db)
	if err != nil {
		return fmt.Errorf("check the TRIGGER privilege: %w", err)
	}
	if len(held) == 0 {
		return fmt.Errorf("the backup user lacks the TRIGGER privilege on %s (GRANT TRIGGER ON *.*, see docs/setup-mysql.md): information_schema would hide its triggers, which would be left out", QuoteIdent(db))
	}
	return nil
}
