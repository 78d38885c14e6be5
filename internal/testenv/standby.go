package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// NewStandby starts a streaming hot standby of primary, built as a DBA
// builds one: Debian's pg_basebackup -R (standby.signal and
// primary_conninfo written for it) run as the server's OS user. Debian's
// client is 15, so the primary must be PostgreSQL 15 or older. It is
// destroyed when the test ends.
func NewStandby(t testing.TB, primary *Postgres, conf ...string) *Postgres {
	t.Helper()
	cred, err := serviceUser("postgres")
	if err != nil {
		Unavailable(t, "a standby's OS user", err)
	}
	dir, err := tempDir("tidemark-standby-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := chownTree(dir, cred); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if err := runAs(cred, filepath.Join(PostgresBinDir, "pg_basebackup"), "-h", primary.Host, "-p", fmt.Sprint(primary.Port),
		"-U", primary.User, "-D", data, "-R", "-X", "stream", "-c", "fast"); err != nil {
		t.Fatalf("build the standby: %v", err)
	}
	return NewPostgreSQL(t, PostgresOptions{DataDir: data, Conf: conf})
}
