package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/internal/testenv"
)

// pgSuite: base backup and restore of a pgbench database, side by side
// with pg_basebackup (tar, client-side zstd level 1) and pgBackRest (zstd
// level 1, process-max 2), A B C A B C …: wall time, throughput, stored
// size and peak RSS; then a second backup after 5% of the rows changed
// (tidemark's new bytes against pgBackRest --type=incr).
func pgSuite(ctx context.Context, dir string, scale, runs int) error {
	bin, err := filepath.Abs("bin/tidemark")
	if err != nil {
		return err
	}
	pgbrDir := filepath.Join(dir, "pgbr-setup")
	os.MkdirAll(pgbrDir, 0o755)
	pg, err := testenv.StartPostgres(testenv.PostgresOptions{Conf: []string{"max_wal_size=4GB", "checkpoint_timeout=30min", "archive_mode=on"}})
	if err != nil {
		return err
	}
	defer pg.Destroy()
	url := pg.URL("postgres")
	fmt.Printf("\npostgres suite: pgbench scale %d, %d runs, A B C order\n", scale, runs)
	if out, err := exec.CommandContext(ctx, "pgbench", "-i", "-q", "-s", strconv.Itoa(scale), url).CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var dbSize int64
	conn.QueryRow(ctx, "SELECT sum(pg_database_size(oid)) FROM pg_database").Scan(&dbSize)
	fmt.Printf("cluster size %.0f MiB\n", mib(dbSize))
	archiveCmd, err := setupPgBackRest(ctx, pg, pgbrDir)
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER SYSTEM SET archive_command = '%s'", archiveCmd)); err != nil {
		return err
	}
	conn.Exec(ctx, "SELECT pg_reload_conf()")
	pgbrConf := filepath.Join(pgbrDir, "pgbackrest", "pgbackrest.conf")
	pgbrRepo := filepath.Join(pgbrDir, "pgbackrest", "repo")

	type result struct{ wall, rss []sample }
	res := map[string]*result{}
	add := func(k string, s sample) {
		if res[k] == nil {
			res[k] = &result{}
		}
		res[k].wall = append(res[k].wall, s)
	}
	var tmStored, tmSecond, pgbrFull, pgbrIncr, bbStored int64
	for run := 0; run < runs; run++ {
		// A: tidemark (no streamer runs: the backup archives its own WAL range).
		repo := filepath.Join(dir, fmt.Sprintf("tm-repo-%d", run))
		if out, err := exec.Command(bin, "init", "--repo", repo, "--no-encryption").CombinedOutput(); err != nil {
			return fmt.Errorf("init: %v %s", err, out)
		}
		conn.Exec(ctx, "SELECT pg_drop_replication_slot('tidemark') FROM pg_replication_slots WHERE slot_name = 'tidemark'")
		s, _, err := measureCmd(exec.Command(bin, "backup", "--repo", repo, "--source", url, "--fast-checkpoint", "--jobs", "2", "--log-level", "warn"), nil)
		if err != nil {
			return err
		}
		add("tidemark backup", s)
		tmStored = dirSize(repo)
		// B: pg_basebackup, tar with client-side zstd.
		bbDir := filepath.Join(dir, fmt.Sprintf("bb-%d", run))
		s, _, err = measureCmd(exec.Command("pg_basebackup", "-d", url, "-D", bbDir, "-Ft", "--compress=client-zstd:1", "-X", "fetch", "-c", "fast"), nil)
		if err != nil {
			return err
		}
		add("pg_basebackup", s)
		bbStored = dirSize(bbDir)
		// C: pgBackRest full.
		before := dirSize(pgbrRepo)
		s, _, err = measureCmd(asServerUser("pgbackrest", "--config="+pgbrConf, "--stanza=bench", "--type=full", "--process-max=2", "backup"), nil)
		if err != nil {
			return err
		}
		add("pgBackRest backup", s)
		pgbrFull = dirSize(pgbrRepo) - before

		// Restores: tidemark restore (files + recovery config), tar extraction
		// of pg_basebackup's output, pgBackRest restore.
		target := filepath.Join(dir, fmt.Sprintf("tm-restore-%d", run))
		s, _, err = measureCmd(exec.Command(bin, "restore", "--repo", repo, "--latest", "--target-dir", target, "--jobs", "4", "--log-level", "warn"), nil)
		if err != nil {
			return err
		}
		add("tidemark restore", s)
		os.RemoveAll(target)
		os.MkdirAll(target, 0o700)
		s, _, err = measureCmd(exec.Command("bash", "-c", fmt.Sprintf("cd %q && tar -I zstd -xf %q/base.tar.zst", target, bbDir)), nil)
		if err != nil {
			return err
		}
		add("pg_basebackup restore (tar -x)", s)
		os.RemoveAll(target)
		os.MkdirAll(target, 0o700)
		pg.GrantPath(target)
		s, _, err = measureCmd(asServerUser("pgbackrest", "--config="+pgbrConf, "--stanza=bench", "--pg1-path="+target, "--process-max=2", "restore"), nil)
		if err != nil {
			return err
		}
		add("pgBackRest restore", s)
		os.RemoveAll(target)
		os.RemoveAll(bbDir)

		// Second backups after touching 5% of the rows.
		if _, err := conn.Exec(ctx, "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 20 = 0"); err != nil {
			return err
		}
		conn.Exec(ctx, "CHECKPOINT")
		s, _, err = measureCmd(exec.Command(bin, "backup", "--repo", repo, "--source", url, "--fast-checkpoint", "--jobs", "2", "--log-level", "warn"), nil)
		if err != nil {
			return err
		}
		add("tidemark second backup", s)
		tmSecond = dirSize(repo) - tmStored
		before = dirSize(pgbrRepo)
		s, _, err = measureCmd(asServerUser("pgbackrest", "--config="+pgbrConf, "--stanza=bench", "--type=incr", "--process-max=2", "backup"), nil)
		if err != nil {
			return err
		}
		add("pgBackRest incr backup", s)
		pgbrIncr = dirSize(pgbrRepo) - before
		os.RemoveAll(repo)
	}
	fmt.Printf("\n%-32s %9s %9s %11s\n", "step", "median", "MiB/s", "peak RSS")
	for _, k := range []string{"tidemark backup", "pg_basebackup", "pgBackRest backup", "tidemark restore", "pg_basebackup restore (tar -x)",
		"pgBackRest restore", "tidemark second backup", "pgBackRest incr backup"} {
		m := median(res[k].wall)
		fmt.Printf("%-32s %8.2fs %9.0f %8.1f MiB\n", k, m.wall.Seconds(), mib(dbSize)/m.wall.Seconds(), mib(m.maxRSS))
	}
	ratio := func(a, b string) float64 {
		return median(res[a].wall).wall.Seconds() / median(res[b].wall).wall.Seconds()
	}
	fmt.Printf("\nbackup time  tidemark/pg_basebackup %.2f   tidemark/pgBackRest %.2f   (<1: tidemark faster)\n",
		ratio("tidemark backup", "pg_basebackup"), ratio("tidemark backup", "pgBackRest backup"))
	fmt.Printf("restore time tidemark/tar -x %.2f   tidemark/pgBackRest %.2f\n",
		ratio("tidemark restore", "pg_basebackup restore (tar -x)"), ratio("tidemark restore", "pgBackRest restore"))
	fmt.Printf("stored       tidemark %.0f MiB (with its WAL)   pg_basebackup %.0f MiB   pgBackRest %.0f MiB (backup only)\n",
		mib(tmStored), mib(bbStored), mib(pgbrFull))
	fmt.Printf("after 5%% of rows changed: tidemark stored %.1f MiB new, pgBackRest incr %.1f MiB\n", mib(tmSecond), mib(pgbrIncr))
	return nil
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
