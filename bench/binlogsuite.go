package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/file"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/internal/testenv"
)

// binlogSuite: archive lag under a sustained MariaDB write load for
// `tidemark stream` and `mariadb-binlog --read-from-remote-server --raw
// --stop-never`, both following the same server at the same time. Every
// 100 ms the server's binlog end (SHOW MASTER STATUS), tidemark's durable
// end (its segment index) and mariadb-binlog's (the size of its raw file)
// are sampled; byte lag is the difference, time lag how long ago the
// server passed the archived position. Also events/s and MB/s archived and
// each process's peak RSS.
func binlogSuite(ctx context.Context, dir string, dur time.Duration) error {
	bin, err := filepath.Abs("bin/tidemark")
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s missing: run `make build`", bin)
	}
	db, err := testenv.StartMariaDB(testenv.MariaDBOptions{Args: []string{"--max-binlog-size=1073741824", "--sync-binlog=0"}})
	if err != nil {
		return fmt.Errorf("start MariaDB: %w", err)
	}
	defer db.Destroy()
	repoDir := filepath.Join(dir, "binlog-repo")
	if out, err := exec.Command(bin, "init", "--repo", repoDir, "--no-encryption").CombinedOutput(); err != nil {
		return fmt.Errorf("init: %v\n%s", err, out)
	}
	c, err := db.Conn()
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Execute("CREATE DATABASE b"); err != nil {
		return err
	}
	if _, err := c.Execute("CREATE TABLE b.t (id BIGINT PRIMARY KEY AUTO_INCREMENT, u CHAR(36), v VARCHAR(300), n DECIMAL(12,4))"); err != nil {
		return err
	}
	tm := exec.Command(bin, "stream", "--repo", repoDir, "--source", db.URL(), "--flush-interval", "1s", "--log-level", "warn")
	tm.Stderr = os.Stderr
	rawDir := filepath.Join(dir, "binlog-raw") + "/"
	if err := os.MkdirAll(rawDir, 0o755); err != nil {
		return err
	}
	mb := exec.Command("mariadb-binlog", "--read-from-remote-server", "--raw", "--stop-never", "--host", db.Host,
		"--port", strconv.Itoa(db.Port), "--user", db.User, "--result-file="+rawDir, "mysql-bin.000001")
	mb.Stderr = os.Stderr
	for _, p := range []*exec.Cmd{tm, mb} {
		if err := p.Start(); err != nil {
			return fmt.Errorf("start %s: %w", p.Path, err)
		}
		defer p.Process.Kill()
	}
	store, err := file.Open(repoDir)
	if err != nil {
		return err
	}
	repo, err := archive.Open(ctx, store, archive.Keys{})
	if err != nil {
		return err
	}
	fmt.Printf("binlog suite: MariaDB, 4 writers inserting ~300-byte rows for %s; tidemark stream (--flush-interval 1s) and mariadb-binlog --raw side by side\n", dur)

	var stop atomic.Bool
	var wg sync.WaitGroup
	var rows atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := db.Conn()
			if err != nil {
				return
			}
			defer w.Close()
			buf := make([]byte, 140)
			for !stop.Load() {
				rand.Read(buf)
				if _, err := w.Execute(fmt.Sprintf("INSERT INTO b.t (u, v, n) VALUES (UUID(), '%s', RAND()*1000)", hex.EncodeToString(buf))); err == nil {
					rows.Add(1)
				}
			}
		}()
	}
	type point struct {
		at                  time.Time
		server, tm, mbinlog int64
	}
	var pts []point
	start := time.Now()
	for time.Since(start) < dur {
		time.Sleep(100 * time.Millisecond)
		r, err := c.Execute("SHOW MASTER STATUS")
		if err != nil {
			return fmt.Errorf("SHOW MASTER STATUS: %w", err)
		}
		file, _ := r.GetString(0, 0)
		pos, _ := r.GetInt(0, 1)
		p := point{at: time.Now(), server: int64(pos)}
		if sums, err := binlog.Summarize(ctx, repo); err == nil && len(sums) == 1 {
			if e, err := binlog.ParsePosition(sums[0].End); err == nil && e.File == file {
				p.tm = int64(e.Pos)
			}
		}
		if fi, err := os.Stat(filepath.Join(rawDir, file)); err == nil {
			p.mbinlog = fi.Size()
		}
		pts = append(pts, p)
	}
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	lag := func(get func(point) int64) ([3]float64, [3]float64) {
		var bl, tl []float64
		for i, x := range pts {
			a := get(x)
			bl = append(bl, float64(x.server-a)/1024)
			age := 0.0
			for j := i; j >= 0; j-- {
				if pts[j].server <= a {
					break
				}
				age = x.at.Sub(pts[j].at).Seconds()
			}
			tl = append(tl, age)
		}
		return pct(bl), pct(tl)
	}
	for _, m := range []struct {
		name string
		get  func(point) int64
		pid  int
	}{{"tidemark stream", func(p point) int64 { return p.tm }, tm.Process.Pid}, {"mariadb-binlog", func(p point) int64 { return p.mbinlog }, mb.Process.Pid}} {
		b, t := lag(m.get)
		fmt.Printf("  %-16s lag KiB p50 %8.1f p99 %8.1f max %8.1f | lag s p50 %5.2f p99 %5.2f max %5.2f | peak RSS %s\n",
			m.name, b[0], b[1], b[2], t[0], t[1], t[2], peakRSS(m.pid))
	}
	last := pts[len(pts)-1]
	fmt.Printf("  load: %d rows, %.0f rows/s; server wrote %.1f MB/s of binlog; tidemark archived %.1f MB/s\n",
		rows.Load(), float64(rows.Load())/elapsed.Seconds(), float64(last.server)/elapsed.Seconds()/1e6, float64(last.tm)/elapsed.Seconds()/1e6)
	tm.Process.Signal(os.Interrupt)
	tm.Wait()
	return nil
}

// peakRSS reads a running process's high-water resident set.
func peakRSS(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "?"
}
