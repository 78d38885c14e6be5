package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/internal/testenv"
)

// pgSuite: base backup and restore of a pgbench database, side by side
// with pg_basebackup (tar, client-side zstd level 1) and pgBackRest (zstd
// level 1, process-max 2), rotated A B C, B C A, C A B …: wall time, throughput, stored
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
	fmt.Printf("\npostgres suite: pgbench scale %d, %d runs, order rotated each run (A B C, B C A, C A B)\n", scale, runs)
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
	// pgbench -i leaves the whole cluster dirty: checkpoint now, or the
	// first backup (whoever runs first) pays for writing it all out.
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return err
	}
	// Nor may archive_command still be pushing the load's WAL (about a
	// hundred segments) while the first run measures.
	if err := waitArchived(ctx, conn, false); err != nil {
		return err
	}
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
	var tmStored, tmSecond, tmSecondWAL, pgbrFull, pgbrIncr, bbStored int64
	// rotate runs steps starting with a different one each run (A B C,
	// B C A, C A B …), so no tool always runs first on a cold page cache
	// or first-touched memory.
	rotate := func(run int, steps ...func() error) error {
		for i := range steps {
			if err := steps[(i+run)%len(steps)](); err != nil {
				return err
			}
		}
		return nil
	}
	for run := 0; run < runs; run++ {
		repo := filepath.Join(dir, fmt.Sprintf("tm-repo-%d", run))
		bbDir := filepath.Join(dir, fmt.Sprintf("bb-%d", run))
		// As deployed: `tidemark stream` archives WAL continuously, as
		// archive_command does for pgBackRest; backups wait for it.
		stopStream, err := streamingRepo(ctx, conn, bin, repo, url)
		if err != nil {
			return err
		}
		err = rotate(run,
			func() error {
				s, _, err := measureCmd(exec.Command(bin, "backup", "--repo", repo, "--source", url, "--fast-checkpoint", "--jobs", "2", "--log-level", "warn"), nil)
				add("tidemark backup", s)
				tmStored = dirSize(repo) - dirSize(filepath.Join(repo, "wal"))
				return err
			},
			func() error { // pg_basebackup, tar with client-side zstd
				s, _, err := measureCmd(exec.Command("pg_basebackup", "-d", url, "-D", bbDir, "-Ft", "--compress=client-zstd:1", "-X", "fetch", "-c", "fast"), nil)
				add("pg_basebackup", s)
				bbStored = dirSize(bbDir)
				return err
			},
			func() error { // pgBackRest full
				backupDir := filepath.Join(pgbrRepo, "backup")
				before := dirSize(backupDir)
				s, _, err := measureCmd(asServerUser("pgbackrest", "--config="+pgbrConf, "--stanza=bench", "--type=full", "--process-max=2", "backup"), nil)
				add("pgBackRest backup", s)
				pgbrFull = dirSize(backupDir) - before
				return err
			})
		if err != nil {
			return err
		}

		// Restores: tidemark restore (files + recovery config), tar extraction
		// of pg_basebackup's output, pgBackRest restore.
		target := filepath.Join(dir, fmt.Sprintf("restore-%d", run))
		fresh := func() {
			os.RemoveAll(target)
			os.MkdirAll(target, 0o700)
			pg.GrantPath(target)
		}
		err = rotate(run,
			func() error {
				fresh()
				s, _, err := measureCmd(exec.Command(bin, "restore", "--repo", repo, "--latest", "--target-dir", target, "--jobs", "4", "--log-level", "warn"), nil)
				add("tidemark restore", s)
				return err
			},
			func() error {
				fresh()
				s, _, err := measureCmd(exec.Command("bash", "-c", fmt.Sprintf("cd %q && tar -I zstd -xf %q/base.tar.zst && sync -f .", target, bbDir)), nil)
				add("pg_basebackup restore (tar -x)", s)
				return err
			},
			func() error {
				fresh()
				s, _, err := measureCmd(asServerUser("pgbackrest", "--config="+pgbrConf, "--stanza=bench", "--pg1-path="+target, "--process-max=2", "restore"), nil)
				add("pgBackRest restore", s)
				return err
			})
		if err != nil {
			return err
		}
		os.RemoveAll(target)
		os.RemoveAll(bbDir)

		// Second backups after touching 5% of the rows. Tidemark's new bytes
		// are counted without WAL (both archivers push the UPDATE's WAL
		// before the backups start; what a backup itself adds is counted
		// apart).
		if _, err := conn.Exec(ctx, "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 20 = 0"); err != nil {
			stopStream()
			return err
		}
		conn.Exec(ctx, "CHECKPOINT")
		if err := waitArchived(ctx, conn, true); err != nil {
			stopStream()
			return err
		}
		walDir := filepath.Join(repo, "wal")
		err = rotate(run,
			func() error {
				before, beforeWAL := dirSize(repo), dirSize(walDir)
				s, _, err := measureCmd(exec.Command(bin, "backup", "--repo", repo, "--source", url, "--fast-checkpoint", "--jobs", "2", "--log-level", "warn"), nil)
				add("tidemark second backup", s)
				tmSecondWAL = dirSize(walDir) - beforeWAL
				tmSecond = dirSize(repo) - before - tmSecondWAL
				return err
			},
			func() error {
				backupDir := filepath.Join(pgbrRepo, "backup")
				before := dirSize(backupDir)
				s, _, err := measureCmd(asServerUser("pgbackrest", "--config="+pgbrConf, "--stanza=bench", "--type=incr", "--process-max=2", "backup"), nil)
				add("pgBackRest incr backup", s)
				pgbrIncr = dirSize(backupDir) - before
				return err
			})
		stopStream()
		if err != nil {
			return err
		}
		os.RemoveAll(repo)
	}
	fmt.Printf("\n%-32s %9s %9s %11s   %s\n", "step", "median", "MiB/s", "peak RSS", "each run")
	for _, k := range []string{"tidemark backup", "pg_basebackup", "pgBackRest backup", "tidemark restore", "pg_basebackup restore (tar -x)",
		"pgBackRest restore", "tidemark second backup", "pgBackRest incr backup"} {
		m := median(res[k].wall)
		var each []string
		for _, x := range res[k].wall {
			each = append(each, fmt.Sprintf("%.2f", x.wall.Seconds()))
		}
		fmt.Printf("%-32s %8.2fs %9.0f %8.1f MiB   %s\n", k, m.wall.Seconds(), mib(dbSize)/m.wall.Seconds(), mib(m.maxRSS), strings.Join(each, " "))
	}
	ratio := func(a, b string) float64 {
		return median(res[a].wall).wall.Seconds() / median(res[b].wall).wall.Seconds()
	}
	fmt.Printf("\nbackup time  tidemark/pg_basebackup %.2f   tidemark/pgBackRest %.2f   (<1: tidemark faster)\n",
		ratio("tidemark backup", "pg_basebackup"), ratio("tidemark backup", "pgBackRest backup"))
	fmt.Printf("restore time tidemark/tar -x %.2f   tidemark/pgBackRest %.2f\n",
		ratio("tidemark restore", "pg_basebackup restore (tar -x)"), ratio("tidemark restore", "pgBackRest restore"))
	fmt.Printf("stored       tidemark %.1f MiB   pgBackRest %.1f MiB   (the backups, without archived WAL)   pg_basebackup %.1f MiB (with the backup's WAL)\n",
		mib(tmStored), mib(pgbrFull), mib(bbStored))
	fmt.Printf("after 5%% of rows changed: tidemark stored %.1f MiB of new chunks (+%.1f MiB of WAL archived meanwhile), pgBackRest incr %.1f MiB\n",
		mib(tmSecond), mib(tmSecondWAL), mib(pgbrIncr))
	return nil
}

// waitStreaming waits until tidemark's streamer holds its slot.
func waitStreaming(ctx context.Context, conn *pgx.Conn) error {
	for i := 0; i < 300; i++ {
		var active bool
		conn.QueryRow(ctx, "SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = 'tidemark'").Scan(&active)
		if active {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("tidemark stream did not connect within 30s")
}

// waitArchived waits until the archivers have the WAL written so far:
// archive_command's last archived segment the current one (after a switch)
// and, with streamer, tidemark's slot flushed up to the current position.
func waitArchived(ctx context.Context, conn *pgx.Conn, streamer bool) error {
	var target string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&target); err != nil {
		return err
	}
	conn.Exec(ctx, "SELECT pg_switch_wal()")
	for i := 0; i < 1200; i++ {
		streamed, pushed := !streamer, false
		if streamer {
			conn.QueryRow(ctx, "SELECT coalesce(bool_or(flush_lsn >= $1::pg_lsn), false) FROM pg_stat_replication WHERE application_name LIKE 'tidemark%'", target).Scan(&streamed)
		}
		conn.QueryRow(ctx, "SELECT coalesce(last_archived_wal >= pg_walfile_name($1::pg_lsn), false) FROM pg_stat_archiver", target).Scan(&pushed)
		if streamed && pushed {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the archivers did not catch up with %s within 2 minutes (archive_command failing?)", target)
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
