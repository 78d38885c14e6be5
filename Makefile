# Tidemark — see README.md. `make demo` and `make test` work on a fresh machine.
GO       ?= go
BIN      := bin/tidemark
# Servers and tools built from Go modules are cached here by `make deps`.
export TIDEMARK_CACHE ?= $(HOME)/.cache/tidemark

.PHONY: all deps deps-demo build test demo bench fuzz vet clean

all: build

deps:
	@bash scripts/deps.sh

# Only what the demo uses: PostgreSQL 15 and age.
deps-demo:
	@bash scripts/deps.sh demo

build:
	$(GO) build -o $(BIN) ./cmd/tidemark

vet:
	$(GO) vet ./...

# The whole suite against real servers (PostgreSQL, MariaDB, FerretDB, MinIO,
# fake-gcs-server, Azurite)
# started by the tests themselves. Under CI=true a server that cannot start
# fails its tests instead of skipping them. The PostgreSQL suite runs on 15
# (Debian's) and again on 17; the tests that pin their majors (13 to 18:
# TestEveryMajor, the 17+ incremental tests) run once.
PG_CLI_TESTS := Postgres|TestRestoreStart|TestStreamWALGap|TestWalFetch|TestVerifyKeys
PG_PINNED    := TestEveryMajor|TestIncremental|TestBinDir|TestPostgreSQLMajors
test: deps vet
	$(GO) test -count=1 -timeout 25m ./...
	TIDEMARK_PG_MAJOR=17 $(GO) test -count=1 -timeout 15m -skip '$(PG_PINNED)' ./wal ./restore/postgres
	TIDEMARK_PG_MAJOR=17 $(GO) test -count=1 -timeout 10m -run '$(PG_CLI_TESTS)' ./cmd/tidemark

# The demo keeps its repository on local disk, so its binary leaves the
# object stores' SDKs out (-tags tidemark_nocloud): that halves a first build.
demo: deps-demo
	$(GO) build -tags tidemark_nocloud -o bin/tidemark-demo ./cmd/tidemark
	$(GO) run ./internal/demo bin/tidemark-demo

# Side-by-side benchmarks (A B A B …) with ratios and peak RSS; see bench/README.md.
bench: deps build
	$(GO) run ./bench $(BENCH_ARGS)

# Short fuzzing of every parser of outside bytes (longer: FUZZTIME=10m).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./archive -run '^$$' -fuzz '^FuzzObjectReader$$' -fuzztime $(FUZZTIME)
	$(GO) test ./archive -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME)
	$(GO) test ./archive -run '^$$' -fuzz '^FuzzChunkIndex$$' -fuzztime $(FUZZTIME)
	$(GO) test ./archive -run '^$$' -fuzz '^FuzzPackTrailer$$' -fuzztime $(FUZZTIME)
	$(GO) test ./archive/store/azblob -run '^$$' -fuzz '^FuzzParseAzureURL$$' -fuzztime $(FUZZTIME)
	$(GO) test ./restore -run '^$$' -fuzz '^FuzzParseTime$$' -fuzztime $(FUZZTIME)
	$(GO) test ./restore/postgres -run '^$$' -fuzz '^FuzzParseIncrHeader$$' -fuzztime $(FUZZTIME)
	$(GO) test ./wal -run '^$$' -fuzz '^FuzzParseVersion$$' -fuzztime $(FUZZTIME)
	$(GO) test ./basebackup/mysql -run '^$$' -fuzz '^FuzzRowReader$$' -fuzztime $(FUZZTIME)
	$(GO) test ./binlog -run '^$$' -fuzz '^FuzzParseSegment$$' -fuzztime $(FUZZTIME)
	$(GO) test ./binlog -run '^$$' -fuzz '^FuzzParsePosition$$' -fuzztime $(FUZZTIME)
	$(GO) test ./binlog -run '^$$' -fuzz '^FuzzParseStatusVars$$' -fuzztime $(FUZZTIME)
	$(GO) test ./oplog -run '^$$' -fuzz '^FuzzSegmentReader$$' -fuzztime $(FUZZTIME)
	$(GO) test ./oplog -run '^$$' -fuzz '^FuzzParseTS$$' -fuzztime $(FUZZTIME)
	$(GO) test ./restore/mongodb -run '^$$' -fuzz '^FuzzApplyUpdate$$' -fuzztime $(FUZZTIME)

clean:
	rm -rf bin
