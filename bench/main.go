// Command bench measures Tidemark side by side with an anchor tool in the
// same run (A B A B …), reporting medians, ratios and peak RSS. Run it with
// `make bench` (BENCH_ARGS="-size 256MiB -runs 3" to shrink or grow it).
//
// Suites:
//
//	repo    1 GiB of mixed data through an encrypted repository on file://
//	        and s3:// (MinIO): backup, restore (bytes compared), and a second
//	        backup of the same data (new bytes must stay under 1%).
//	        Anchor: `zstd -T0 | age -r` and back, the pipeline a user would
//	        script by hand (file:// only: there is no S3 client to pair it with).
//	wal     archive lag under pgbench: tidemark stream vs pg_receivewal --slot
//	        vs archive_command (pgBackRest archive-push), and pgbench TPS
//	        without archiving, with each, and with tidemark --synchronous.
//	postgres base backup and restore of a pgbench database (scale 100)
//	        vs pg_basebackup and pgBackRest: time, size, peak RSS; and a
//	        second backup after 5% of the rows changed.
//	binlog  archive lag under a MariaDB write load: tidemark stream vs
//	        mariadb-binlog --read-from-remote-server --raw --stop-never, side
//	        by side on one server; archived MB/s; peak RSS.
//	compress stored size of pgbench, WAL, sysbench/md5 rows and binlogs,
//	        uuid/JSON rows, BSON and random bytes through a repository vs
//	        C zstd -1 and -3 on the same files; MB per CPU-second; peak RSS.
//	object  one large object (default 10 GiB) streamed into and out of the
//	        repository: peak RSS must stay bounded (target ≤ 64 MiB) whatever
//	        the size; measured at three sizes to show how memory grows.
//
// Each measured step runs in a child process so its peak RSS is its own.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		if err := runChild(context.Background(), os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "bench child: %v\n", err)
			os.Exit(1)
		}
		return
	}
	suite := flag.String("suite", "all", "repo, object, wal, postgres, pgincr, binlog, mysql, mongodb, compress or all")
	compressFlag := flag.String("compress-size", "64MiB", "compress suite: size of each generated corpus")
	compressScale := flag.Int("compress-scale", 20, "compress suite: pgbench scale of the tar corpus")
	binlogDur := flag.Duration("binlog-duration", 30*time.Second, "binlog suite: write load duration")
	mysqlRows := flag.Int64("mysql-rows", 1500000, "mysql suite: rows of the sysbench-shaped table")
	mongoDocs := flag.Int("mongo-docs", 100000, "mongodb suite: documents in the backed-up collection")
	mongoWrites := flag.Int("mongo-writes", 3000, "mongodb suite: mixed writes replayed by restore --latest")
	mongoIdle := flag.Duration("mongo-idle", time.Minute, "mongodb suite: how long to measure an idle source's CPU with and without the streamer (0: skip)")
	pgScale := flag.Int("pg-scale", 100, "postgres suite: pgbench scale of the backed-up database")
	pgIncrRows := flag.Int64("pgincr-rows", 7_000_000, "pgincr suite: rows of the PostgreSQL 17 table (7M ≈ 1.6 GiB of cluster with its primary key)")
	scale := flag.Int("pgbench-scale", 50, "wal suite: pgbench scale")
	phase := flag.Duration("pgbench-duration", 60*time.Second, "wal suite: pgbench run per phase")
	sizeFlag := flag.String("size", "1GiB", "data size of the repo suite")
	objFlag := flag.String("object-size", "10GiB", "largest object of the object suite")
	runs := flag.Int("runs", 3, "A/B pairs per measurement")
	work := flag.String("work", "", "scratch directory (default: a temp dir; needs ~3× size free)")
	flag.Parse()
	size, err := parseSize(*sizeFlag)
	if err != nil {
		fatal(err)
	}
	objSize, err := parseSize(*objFlag)
	if err != nil {
		fatal(err)
	}
	compressSize, err := parseSize(*compressFlag)
	if err != nil {
		fatal(err)
	}
	dir := *work
	if dir == "" {
		if dir, err = os.MkdirTemp("", "tidemark-bench-"); err != nil {
			fatal(err)
		}
		defer os.RemoveAll(dir)
	}
	ctx := context.Background()
	if *suite == "repo" || *suite == "all" {
		if err := repoSuite(ctx, dir, size, *runs); err != nil {
			fatal(err)
		}
	}
	if *suite == "object" || *suite == "all" {
		if err := objectSuite(ctx, dir, objSize); err != nil {
			fatal(err)
		}
	}
	if *suite == "postgres" || *suite == "all" {
		if err := pgSuite(ctx, dir, *pgScale, *runs); err != nil {
			fatal(err)
		}
	}
	if *suite == "pgincr" || *suite == "all" {
		if err := pgIncrSuite(ctx, dir, *pgIncrRows, *runs); err != nil {
			fatal(err)
		}
	}
	if *suite == "binlog" || *suite == "all" {
		if err := binlogSuite(ctx, dir, *binlogDur); err != nil {
			fatal(err)
		}
	}
	if *suite == "mysql" || *suite == "all" {
		if err := mysqlSuite(ctx, dir, *mysqlRows, max(1, *runs-1)); err != nil {
			fatal(err)
		}
	}
	if *suite == "mongodb" || *suite == "all" {
		if err := mongoSuite(ctx, dir, *mongoDocs, *mongoWrites, *mongoIdle, max(1, *runs-1)); err != nil {
			fatal(err)
		}
	}
	if *suite == "compress" || *suite == "all" {
		if err := compressSuite(ctx, dir, compressSize, *compressScale, *runs); err != nil {
			fatal(err)
		}
	}
	if *suite == "wal" || *suite == "all" {
		if err := walSuite(ctx, dir, *scale, *phase); err != nil {
			fatal(err)
		}
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	os.Exit(1)
}

// sample is one measured run of a step.
type sample struct {
	wall   time.Duration
	cpu    time.Duration // user + system, of the process and its reaped children
	maxRSS int64         // bytes
	note   string
}

func median(xs []sample) sample {
	s := append([]sample(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i].wall < s[j].wall })
	m := s[len(s)/2]
	var rss int64
	for _, x := range xs {
		rss = max(rss, x.maxRSS)
	}
	m.maxRSS = rss // report the worst peak, not the median one
	return m
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func parseSize(s string) (int64, error) {
	units := map[string]int64{"GiB": 1 << 30, "MiB": 1 << 20, "KiB": 1 << 10, "G": 1 << 30, "M": 1 << 20, "K": 1 << 10, "": 1}
	for _, u := range []string{"GiB", "MiB", "KiB", "G", "M", "K", ""} {
		if strings.HasSuffix(s, u) {
			n, err := strconv.ParseFloat(strings.TrimSuffix(s, u), 64)
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("size %q: want e.g. 1GiB, 256MiB", s)
			}
			return int64(n * float64(units[u])), nil
		}
	}
	return 0, fmt.Errorf("size %q", s)
}
