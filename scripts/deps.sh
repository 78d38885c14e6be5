#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmarks need on a fresh machine.
# Idempotent: what is already there is left alone, so a second run takes seconds.
#   - Debian packages: PostgreSQL 15, MariaDB 10.11, age and zstd and pgBackRest
#     (the benchmarks' anchor tools)
#   - MinIO and FerretDB, built from their Go modules into $TIDEMARK_CACHE
set -euo pipefail

CACHE="${TIDEMARK_CACHE:-$HOME/.cache/tidemark}"
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
FERRETDB_VERSION=v1.24.2

say() { printf 'deps: %s\n' "$*"; }

sudo_cmd=""
if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi

missing=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
[ -d /usr/share/postgresql/15/extension ] && [ -f /usr/share/postgresql/15/extension/amcheck.control ] || missing+=(postgresql-contrib)
[ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
command -v age >/dev/null 2>&1 || missing+=(age)
command -v zstd >/dev/null 2>&1 || missing+=(zstd)             # bench anchor
command -v pgbackrest >/dev/null 2>&1 || missing+=(pgbackrest) # bench anchor
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
  # The package starts a system-wide MariaDB; tests run their own throwaway servers.
  if [ -x /usr/sbin/mariadbd ] && command -v service >/dev/null 2>&1; then
    $sudo_cmd service mariadb stop >/dev/null 2>&1 || true
  fi
fi

minio_bin="$CACHE/minio/$MINIO_VERSION/minio"
if [ ! -x "$minio_bin" ]; then
  say "building MinIO $MINIO_VERSION (several minutes, cached in $CACHE)"
  tmp=$(mktemp -d)
  GOBIN="$tmp" GOFLAGS=-mod=mod go install "github.com/minio/minio@$MINIO_VERSION"
  mkdir -p "$(dirname "$minio_bin")"
  mv "$tmp/minio" "$minio_bin"
  rm -rf "$tmp"
fi

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

say "ready (postgres 15, mariadb, age, minio, ferretdb in $CACHE)"
