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

	"github.com/tidemark/tidemark/internal/testenv"
)

// mysqlSuite: base backup and restore of a MariaDB database holding one
// sysbench-shaped table (sbtest1: id, k with its index, c CHAR(120) and
// pad CHAR(60) of random 11-digit groups joined by '-') of rows rows, A B
// C D side by side in each run, 2 threads each:
//
//	backup:  tidemark backup | mydumper | mariadb-dump | zstd | mariadb-backup --backup
//	restore: tidemark restore --latest (rows, then the binlog archived by a
//	         running `tidemark stream`) | myloader | mariadb < dump |
//	         mariadb-backup --prepare + --copy-back + server start |
//	         the server's own floor for a logical load: LOAD DATA INFILE of
//	         server-side files (no client, no network) on 2 connections into
//	         the table without its secondary index, then ADD KEY
//
// each restore into a fresh default-install server.
func mysqlSuite(ctx context.Context, dir string, rows int64, runs int) error {
	bin, err := filepath.Abs("bin/tidemark")
	if err != nil {
		return err
	}
	opts := testenv.MariaDBOptions{Args: []string{"--innodb-buffer-pool-size=512M", "--innodb-log-file-size=256M", "--max-allowed-packet=64M"}}
	src, err := testenv.StartMariaDB(opts)
	if err != nil {
		return fmt.Errorf("start MariaDB: %w", err)
	}
	defer src.Destroy()
	fmt.Printf("\nmysql suite: MariaDB 10.11, sysbench-shaped sbtest1 of %d rows, %d runs, 2 threads each, side by side\n", rows, runs)
	if err := createSbtest(src, rows); err != nil {
		return err
	}
	c, err := src.Conn()
	if err != nil {
		return err
	}
	r, err := c.Execute("SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'sbtest'")
	c.Close()
	if err != nil {
		return err
	}
	dbSize, _ := r.GetInt(0, 0)
	fmt.Printf("database size %.0f MiB (data and indexes)\n", mib(int64(dbSize)))
	floor, err := exportHalves(src, dir, rows)
	if err != nil {
		return err
	}
	repo := filepath.Join(dir, "my-repo")
	if out, err := exec.Command(bin, "init", "--repo", repo, "--no-encryption").CombinedOutput(); err != nil {
		return fmt.Errorf("init: %v %s", err, out)
	}
	stopStream, err := startDaemon(exec.Command(bin, "stream", "--repo", repo, "--source", src.URL(), "--log-level", "warn"))
	if err != nil {
		return err
	}
	defer stopStream()
	conn := func(m *testenv.MariaDB) string {
		return fmt.Sprintf("--host=%s --port=%d --user=%s", m.Host, m.Port, m.User)
	}
	res := map[string][]sample{}
	serverCPU := map[string][]time.Duration{} // of the restore's target server
	stored := map[string]int64{}
	for run := 0; run < runs; run++ {
		dump := filepath.Join(dir, "dump.sql.zst")
		myd := filepath.Join(dir, "mydumper")
		mbk := filepath.Join(dir, "mariabackup")
		backups := []struct {
			name, out string
			cmd       *exec.Cmd
		}{
			{"tidemark backup", repo, exec.Command(bin, "backup", "--repo", repo, "--source", src.URL(), "--jobs", "2", "--log-level", "warn")},
			{"mydumper", myd, exec.Command("bash", "-c", fmt.Sprintf("rm -rf %q && mydumper %s --threads=2 --database=sbtest --outputdir=%q --trx-consistency-only --rows=100000",
				myd, conn(src), myd))},
			{"mariadb-dump | zstd", dump, exec.Command("bash", "-c", fmt.Sprintf("mariadb-dump %s --single-transaction --master-data=2 --quick --databases sbtest | zstd -q -1 -T2 -o %q",
				conn(src), dump))},
			{"mariadb-backup", mbk, exec.Command("bash", "-c", fmt.Sprintf("rm -rf %q && mariadb-backup --backup %s --parallel=2 --target-dir=%q 2>/dev/null",
				mbk, conn(src), mbk))},
		}
		for _, b := range backups {
			before := dirSize(b.out)
			s, _, err := measureCmd(b.cmd, nil)
			if err != nil {
				return err
			}
			res[b.name] = append(res[b.name], s)
			if run == 0 {
				stored[b.name] = dirSize(b.out) - before
				if b.out != repo {
					stored[b.name] = dirSize(b.out)
				}
			}
		}
		time.Sleep(2 * time.Second) // the streamer's flush interval: the base's binlog position is archived

		restores := []struct {
			name string
			cmd  func(t *testenv.MariaDB) (*exec.Cmd, error)
		}{
			{"tidemark restore", func(t *testenv.MariaDB) (*exec.Cmd, error) {
				return exec.Command(bin, "restore", "--repo", repo, "--target", t.URL(), "--latest", "--jobs", "2", "--log-level", "warn"), nil
			}},
			{"myloader", func(t *testenv.MariaDB) (*exec.Cmd, error) {
				return exec.Command("myloader", strings.Fields(conn(t))[0], strings.Fields(conn(t))[1], strings.Fields(conn(t))[2],
					"--threads=2", "--directory="+myd), nil
			}},
			{"mariadb < dump", func(t *testenv.MariaDB) (*exec.Cmd, error) {
				return exec.Command("bash", "-c", fmt.Sprintf("zstd -dc %q | mariadb %s", dump, conn(t))), nil
			}},
			{"server LOAD DATA floor", func(t *testenv.MariaDB) (*exec.Cmd, error) {
				return exec.Command("bash", "-c", floorScript(conn(t), floor, rows)), nil
			}},
			{"mariadb-backup restore", func(t *testenv.MariaDB) (*exec.Cmd, error) {
				// A physical restore replaces the stopped server's data
				// directory: prepare, copy back, start (timed together).
				t.Stop()
				if err := os.RemoveAll(t.DataDir); err != nil {
					return nil, err
				}
				return exec.Command("bash", "-c", fmt.Sprintf("mariadb-backup --prepare --target-dir=%q 2>/dev/null && mariadb-backup --copy-back --target-dir=%q --datadir=%q 2>/dev/null",
					mbk, mbk, t.DataDir)), nil
			}},
		}
		for _, step := range restores {
			o := opts
			o.ServerID = 2
			dst, err := testenv.StartMariaDB(o)
			if err != nil {
				return err
			}
			cmd, err := step.cmd(dst)
			if err != nil {
				dst.Destroy()
				return err
			}
			cpu0, cpuErr := mariadbCPU(dst)
			s, out, err := measureCmd(cmd, nil)
			if cpu1, err1 := mariadbCPU(dst); cpuErr == nil && err1 == nil {
				serverCPU[step.name] = append(serverCPU[step.name], cpu1-cpu0)
			}
			if err == nil && step.name == "tidemark restore" && run == 0 {
				fmt.Print(indent(out.SHA256)) // where its time went: load, indexes, replay
			}
			if err == nil && step.name == "mariadb-backup restore" {
				start := time.Now()
				err = dst.Start()
				s.wall += time.Since(start)
			}
			dst.Destroy()
			if err != nil {
				return err
			}
			res[step.name] = append(res[step.name], s)
		}
		os.Remove(dump)
	}
	fmt.Printf("\n%-24s %9s %9s %9s %11s %11s\n", "step", "median", "MiB/s", "CPU", "peak RSS", "stored")
	for _, k := range []string{"tidemark backup", "mydumper", "mariadb-dump | zstd", "mariadb-backup",
		"tidemark restore", "myloader", "mariadb < dump", "server LOAD DATA floor", "mariadb-backup restore"} {
		m := median(res[k])
		st := ""
		if n, ok := stored[k]; ok {
			st = fmt.Sprintf("%.0f MiB", mib(n))
		}
		fmt.Printf("%-24s %8.2fs %9.0f %8.2fs %8.1f MiB %11s\n", k, m.wall.Seconds(), mib(int64(dbSize))/m.wall.Seconds(), medianCPU(res[k]).Seconds(), mib(m.maxRSS), st)
	}
	// On a shared machine the wall times move with the neighbours' load;
	// the CPU the target server spends on the same rows is steadier.
	fmt.Printf("\ntarget server CPU per restore (median; each run):\n")
	for _, k := range []string{"tidemark restore", "myloader", "mariadb < dump", "server LOAD DATA floor"} {
		if len(serverCPU[k]) == 0 {
			continue // /proc unreadable
		}
		fmt.Printf("%-24s %8.2fs  %v\n", k, medianDur(serverCPU[k]).Seconds(), serverCPU[k])
	}
	ratio := func(a, b string) float64 { return median(res[a]).wall.Seconds() / median(res[b]).wall.Seconds() }
	fmt.Printf("\nbackup time  tidemark/mydumper %.2f  tidemark/mariadb-dump %.2f  tidemark/mariadb-backup %.2f\n",
		ratio("tidemark backup", "mydumper"), ratio("tidemark backup", "mariadb-dump | zstd"), ratio("tidemark backup", "mariadb-backup"))
	fmt.Printf("restore time tidemark/myloader %.2f  tidemark/mariadb %.2f  tidemark/mariadb-backup %.2f   (<1: tidemark faster)\n",
		ratio("tidemark restore", "myloader"), ratio("tidemark restore", "mariadb < dump"), ratio("tidemark restore", "mariadb-backup restore"))
	fmt.Printf("server LOAD DATA floor/myloader %.2f  tidemark/floor %.2f\n",
		ratio("server LOAD DATA floor", "myloader"), ratio("tidemark restore", "server LOAD DATA floor"))
	fmt.Println(strings.TrimSpace(`
CPU is the client tools' own (user+system), not the server's; peak RSS of
the anchors is the largest process of the pipeline; tidemark restore
includes the binlog replay; mydumper stores uncompressed files.`))
	return nil
}

// createSbtest creates sbtest.sbtest1 as sysbench's oltp prepare does:
// c is ten random 11-digit groups joined by '-', pad five.
func createSbtest(m *testenv.MariaDB, rows int64) error {
	c, err := m.Conn()
	if err != nil {
		return err
	}
	defer c.Close()
	group := "LPAD(FLOOR(RAND()*99999999999), 11, '0')"
	groups := func(n int) string { return "CONCAT_WS('-'" + strings.Repeat(", "+group, n) + ")" }
	for _, q := range []string{"CREATE DATABASE sbtest", "USE sbtest",
		"CREATE TABLE sbtest1 (id INT NOT NULL AUTO_INCREMENT, k INT NOT NULL DEFAULT 0, c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', PRIMARY KEY (id), KEY k_1 (k)) ENGINE=InnoDB",
		fmt.Sprintf("INSERT INTO sbtest1 (k, c, pad) SELECT FLOOR(RAND()*%d), %s, %s FROM seq_1_to_%d", rows, groups(10), groups(5), rows),
		"ANALYZE TABLE sbtest1", "RESET MASTER"} {
		if _, err := c.Execute(q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// mariadbCPU is the user+system CPU time the server process has used
// (from /proc: its pid file sits beside the data directory).
func mariadbCPU(m *testenv.MariaDB) (time.Duration, error) {
	pid, err := os.ReadFile(filepath.Join(filepath.Dir(m.DataDir), "mariadb.pid"))
	if err != nil {
		return 0, err
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(pid)), "stat"))
	if err != nil {
		return 0, err
	}
	// Fields after the parenthesised command name: utime and stime are
	// the 12th and 13th, in clock ticks (100 per second on Linux).
	_, rest, _ := strings.Cut(string(stat), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc stat for pid %s", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	sys, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc stat for pid %s", pid)
	}
	return time.Duration(u+sys) * 10 * time.Millisecond, nil
}

// exportHalves writes sbtest1 as two server-side text files split by id
// (the rows' ids are 1..rows), for the LOAD DATA floor.
func exportHalves(m *testenv.MariaDB, dir string, rows int64) ([2]string, error) {
	files := [2]string{filepath.Join(dir, "floor.0.tsv"), filepath.Join(dir, "floor.1.tsv")}
	c, err := m.Conn()
	if err != nil {
		return files, err
	}
	defer c.Close()
	for i, cond := range []string{fmt.Sprintf("id <= %d", rows/2), fmt.Sprintf("id > %d", rows/2)} {
		os.Remove(files[i])
		q := fmt.Sprintf("SELECT * FROM sbtest.sbtest1 WHERE %s ORDER BY id INTO OUTFILE '%s'", cond, files[i])
		if _, err := c.Execute(q); err != nil {
			return files, fmt.Errorf("%s: %w", q, err)
		}
	}
	return files, nil
}

// floorScript loads the exported halves on two connections into sbtest1
// without its secondary index (as tidemark creates it), then adds k_1.
func floorScript(conn string, files [2]string, rows int64) string {
	create := "CREATE DATABASE sbtest; CREATE TABLE sbtest.sbtest1 (id INT NOT NULL AUTO_INCREMENT, k INT NOT NULL DEFAULT 0, c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', PRIMARY KEY (id)) ENGINE=InnoDB"
	load := func(f string) string {
		return fmt.Sprintf("mariadb %s -e \"SET sql_log_bin = 0; LOAD DATA INFILE '%s' INTO TABLE sbtest.sbtest1 CHARACTER SET binary\"", conn, f)
	}
	return fmt.Sprintf("set -e; mariadb %s -e %q; %s & a=$!; %s & b=$!; wait $a; wait $b; mariadb %s -e 'SET sql_log_bin = 0; ALTER TABLE sbtest.sbtest1 ADD KEY k_1 (k)'; test \"$(mariadb %s -N -e 'SELECT COUNT(*) FROM sbtest.sbtest1')\" = %d",
		conn, create, load(files[0]), load(files[1]), conn, conn, rows)
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		b.WriteString("  | " + l + "\n")
	}
	return b.String()
}
