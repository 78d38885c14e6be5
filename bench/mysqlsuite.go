package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
)

// mysqlSuite: base backup and restore of a MariaDB database of about size
// bytes, A B A B: tidemark backup (2 jobs) vs mariadb-dump
// --single-transaction piped through zstd -T2 (the anchor available here);
// tidemark restore --latest (rows and the binlog archived by a running
// `tidemark stream`) vs the dump piped into the mariadb client, each into
// a fresh server. Data: one table of uuids, random hex text and numbers
// (about 2:1 with zstd) and one of repetitive text, half each.
func mysqlSuite(ctx context.Context, dir string, size int64, runs int) error {
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
	rows := size / 2 / 330 // ~330 bytes per row in each table
	fmt.Printf("\nmysql suite: MariaDB, %d + %d rows (~%.0f MiB), %d runs, A B order\n", rows, rows, mib(size), runs)
	c, err := src.Conn()
	if err != nil {
		return err
	}
	defer c.Close()
	for _, q := range []string{"CREATE DATABASE bench", "USE bench",
		"CREATE TABLE real_data (id BIGINT PRIMARY KEY, u CHAR(36), n DECIMAL(14,2), at DATETIME(6), txt VARCHAR(300), k INT, KEY (k))",
		fmt.Sprintf("INSERT INTO real_data SELECT seq, UUID(), RAND()*1e9, NOW(6) - INTERVAL seq SECOND, CONCAT(SHA2(RAND(), 256), MD5(RAND()), SHA2(seq, 224)), FLOOR(RAND()*1e6) FROM seq_1_to_%d", rows),
		"CREATE TABLE filler (id BIGINT PRIMARY KEY, k INT, filler CHAR(250))",
		fmt.Sprintf("INSERT INTO filler SELECT seq, seq %% 1000, CONCAT('account ', seq) FROM seq_1_to_%d", rows),
		"ANALYZE TABLE real_data, filler", "RESET MASTER"} {
		if _, err := c.Execute(q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	r, err := c.Execute("SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bench'")
	if err != nil {
		return err
	}
	dbSize, _ := r.GetInt(0, 0)
	fmt.Printf("database size %.0f MiB (data and indexes)\n", mib(dbSize))
	repo := filepath.Join(dir, "my-repo")
	if out, err := exec.Command(bin, "init", "--repo", repo, "--no-encryption").CombinedOutput(); err != nil {
		return fmt.Errorf("init: %v %s", err, out)
	}
	stopStream, err := startDaemon(exec.Command(bin, "stream", "--repo", repo, "--source", src.URL(), "--log-level", "warn"))
	if err != nil {
		return err
	}
	defer stopStream()
	res := map[string][]sample{}
	var tmStored, dumpStored int64
	for run := 0; run < runs; run++ {
		before := dirSize(repo)
		s, _, err := measureCmd(exec.Command(bin, "backup", "--repo", repo, "--source", src.URL(), "--jobs", "2", "--log-level", "warn"), nil)
		if err != nil {
			return err
		}
		res["tidemark backup"] = append(res["tidemark backup"], s)
		if run == 0 {
			tmStored = dirSize(repo) - before
		}
		dump := filepath.Join(dir, fmt.Sprintf("dump-%d.sql.zst", run))
		s, _, err = measureCmd(exec.Command("bash", "-c", fmt.Sprintf("mariadb-dump --host=%s --port=%d --user=%s --single-transaction --master-data=2 --quick --databases bench | zstd -q -1 -T2 -o %q",
			src.Host, src.Port, src.User, dump)), nil)
		if err != nil {
			return err
		}
		res["mariadb-dump | zstd"] = append(res["mariadb-dump | zstd"], s)
		dumpStored = dirSize(dump)
		time.Sleep(2 * time.Second) // the streamer's flush interval: the base's binlog position is archived

		for _, step := range []struct {
			name string
			cmd  func(t *testenv.MariaDB) *exec.Cmd
		}{
			{"tidemark restore", func(t *testenv.MariaDB) *exec.Cmd {
				return exec.Command(bin, "restore", "--repo", repo, "--target", t.URL(), "--latest", "--jobs", "2", "--log-level", "warn")
			}},
			{"mariadb < dump", func(t *testenv.MariaDB) *exec.Cmd {
				return exec.Command("bash", "-c", fmt.Sprintf("zstd -dc %q | mariadb --host=%s --port=%d --user=%s", dump, t.Host, t.Port, t.User))
			}},
		} {
			o := opts
			o.ServerID = 2
			dst, err := testenv.StartMariaDB(o)
			if err != nil {
				return err
			}
			s, _, err := measureCmd(step.cmd(dst), nil)
			dst.Destroy()
			if err != nil {
				return err
			}
			res[step.name] = append(res[step.name], s)
		}
		os.Remove(dump)
	}
	fmt.Printf("\n%-24s %9s %9s %11s\n", "step", "median", "MiB/s", "peak RSS")
	for _, k := range []string{"tidemark backup", "mariadb-dump | zstd", "tidemark restore", "mariadb < dump"} {
		m := median(res[k])
		fmt.Printf("%-24s %8.2fs %9.0f %8.1f MiB\n", k, m.wall.Seconds(), mib(dbSize)/m.wall.Seconds(), mib(m.maxRSS))
	}
	ratio := func(a, b string) float64 { return median(res[a]).wall.Seconds() / median(res[b]).wall.Seconds() }
	fmt.Printf("\nbackup time  tidemark/mariadb-dump %.2f   restore time tidemark/mariadb %.2f   (<1: tidemark faster)\n",
		ratio("tidemark backup", "mariadb-dump | zstd"), ratio("tidemark restore", "mariadb < dump"))
	fmt.Printf("stored       tidemark %.0f MiB (first backup; later ones deduplicate against it)   mariadb-dump|zstd %.0f MiB\n", mib(tmStored), mib(dumpStored))
	fmt.Println(strings.TrimSpace(`
peak RSS of the anchors is the largest process of the pipeline (mariadb-dump,
zstd or the client); tidemark restore includes the binlog replay.`))
	return nil
}
