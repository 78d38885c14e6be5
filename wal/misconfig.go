package wal

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tidemark/tidemark/archive"
)

// connectError explains a refused replication connection whose cause is
// the server's configuration, which reconnecting cannot change, as a
// misconfiguration naming the fix (permanent: streaming stops and says
// so). Anything else (the server down, restarting, all WAL senders busy)
// stays as it was, to be retried.
func connectError(source string, err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("connect: %w", err)
	}
	user := "the role"
	if u, perr := url.Parse(source); perr == nil && u.User != nil {
		user = u.User.Username()
	}
	var fix string
	switch {
	case pgErr.Code == "53300" && strings.Contains(pgErr.Message, "max_wal_senders") && strings.Contains(pgErr.Message, "(currently 0)"):
		// 16 and later quote the setting's name: `exceeds "max_wal_senders" (currently 0)`.
		fix = "the source allows no replication connections (max_wal_senders = 0, which wal_level = minimal requires): " +
			"set wal_level = replica (or logical) and max_wal_senders = 10 in postgresql.conf and restart PostgreSQL"
	case pgErr.Code == "28000" && strings.Contains(pgErr.Message, "replication connection"):
		fix = fmt.Sprintf("pg_hba.conf has no entry for replication connections of %s from this host: add a line such as "+
			"`host replication %s <this host's address>/32 scram-sha-256` and reload PostgreSQL", user, user)
	case pgErr.Code == "42501":
		fix = fmt.Sprintf("%s may not stream WAL: ALTER ROLE %s REPLICATION (or use a role that has it)", user, user)
	case pgErr.Code == "28P01":
		fix = fmt.Sprintf("the password of %s was refused: fix it in ~/.pgpass, PGPASSFILE or PGPASSWORD", user)
	default:
		return fmt.Errorf("connect: %w", err)
	}
	return fmt.Errorf("%w: %s (server: %s)", archive.ErrMisconfigured, fix, pgErr.Message)
}
