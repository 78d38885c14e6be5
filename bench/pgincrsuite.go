package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/internal/testenv"
)

// pgIncrSuite: the second backup of a PostgreSQL 17 cluster (summarize_wal
// = on) after 5% of its rows, one contiguous id range, were updated and 1%
// inserted — a block-level incremental against a full backup, alternating
// A B A B: wall time, bytes received from the server, bytes newly stored,
// peak RSS. Each run starts from a fresh repository holding one full
// backup; `tidemark stream` runs throughout, as deployed. Measured twice:
// with the primary key only, then with an index on a random uuid too.
func pgIncrSuite(ctx context.Context, dir string, rows int64, runs int) error {
	bin, err := filepath.Abs("bin/tidemark")
	if err != nil {
		return err
	}
	pg, err := testenv.StartPostgres(testenv.PostgresOptions{Major: 17,
		Conf: []string{"summarize_wal=on", "max_wal_size=8GB", "checkpoint_timeout=30min", "shared_buffers=256MB"}})
	if err != nil {
		return err
	}
	defer pg.Destroy()
	url := pg.URL("postgres")
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	fmt.Printf("\npostgres incremental suite (PostgreSQL 17): %d rows of uuids, numerics and random text; %d runs, A B alternating\n", rows, runs)
	// Realistic, not very compressible rows; settled as a table loaded long
	// ago is (hint bits and visibility map set by VACUUM FREEZE).
	for _, sql := range []string{
		"CREATE TABLE accounts (id bigint PRIMARY KEY, uid uuid NOT NULL, balance numeric(14,2) NOT NULL, updated timestamptz NOT NULL, note text NOT NULL)",
		fmt.Sprintf(`INSERT INTO accounts SELECT g, gen_random_uuid(), round((random()*1e6)::numeric, 2), now() - random() * interval '900 days',
			md5(random()::text) || md5(random()::text) || md5(random()::text) || encode(sha256(random()::text::bytea), 'base64')
			FROM generate_series(1, %d) g`, rows),
		"VACUUM (FREEZE, ANALYZE) accounts",
		"CHECKPOINT",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%.60s: %w", sql, err)
		}
	}
	var dbSize int64
	conn.QueryRow(ctx, "SELECT sum(pg_database_size(oid)) FROM pg_database").Scan(&dbSize)
	fmt.Printf("cluster size %.0f MiB\n", mib(dbSize))

	next := rows
	for _, phase := range []struct{ name, prepare string }{
		{"primary key only", ""},
		// Non-HOT updates add an entry per new row version to every index:
		// in an index on a random key those land on nearly every leaf page.
		{"plus an index on a random uuid", "CREATE INDEX accounts_uid ON accounts (uid)"},
	} {
		if phase.prepare != "" {
			for _, sql := range []string{phase.prepare, "VACUUM (FREEZE, ANALYZE) accounts", "CHECKPOINT"} {
				if _, err := conn.Exec(ctx, sql); err != nil {
					return fmt.Errorf("%.60s: %w", sql, err)
				}
			}
		}
		if err := pgIncrPairs(ctx, conn, dir, bin, url, phase.name, rows, &next, runs); err != nil {
			return err
		}
	}
	return nil
}

// pgIncrPairs measures runs A B pairs of second backups, incremental and
// full, each after the same kind of change, and prints them.
func pgIncrPairs(ctx context.Context, conn *pgx.Conn, dir, bin, url, phase string, rows int64, next *int64, runs int) error {
	type result struct {
		s                  []sample
		received, newBytes []int64
	}
	var summarizer []time.Duration // the WAL summarizer's catch-up before each incremental
	res := map[string]*result{"incremental": {}, "full": {}}
	for run := 0; run < 2*runs; run++ {
		typ := []string{"incremental", "full"}[run%2]
		repo := filepath.Join(dir, fmt.Sprintf("tm-incr-%d", run))
		stopStream, err := streamingRepo(ctx, conn, bin, repo, url)
		if err != nil {
			return err
		}
		err = func() error {
			defer stopStream()
			if _, err := backupJSON(bin, repo, url, "full"); err != nil {
				return err
			}
			// 5% of the rows in one contiguous id range (hot data), rows
			// keeping their size, plus 1% new rows.
			from := (int64(run)*rows/20)%(rows-rows/20) + 1
			for _, sql := range []string{
				fmt.Sprintf(`UPDATE accounts SET balance = balance + 1, updated = now(), note = md5(random()::text) || substr(note, 33)
					WHERE id BETWEEN %d AND %d`, from, from+rows/20-1),
				fmt.Sprintf(`INSERT INTO accounts SELECT g, gen_random_uuid(), round((random()*1e6)::numeric, 2), now(),
					md5(random()::text) || md5(random()::text) || md5(random()::text) || encode(sha256(random()::text::bytea), 'base64')
					FROM generate_series(%d, %d) g`, *next+1, *next+rows/100),
				"CHECKPOINT",
			} {
				if _, err := conn.Exec(ctx, sql); err != nil {
					return fmt.Errorf("%.60s: %w", sql, err)
				}
			}
			*next += rows / 100
			if err := waitStreamed(ctx, conn); err != nil {
				return err
			}
			// The server's WAL summarizer lags a burst of writes: an
			// incremental started now waits inside BASE_BACKUP until it has
			// summarized up to the backup's checkpoint (pg_basebackup
			// --incremental alike). Waited for here, for both types, so the
			// backup meets a server in the state a scheduled one does; how
			// long it took is reported beside the times.
			waited, err := waitSummarized(ctx, conn)
			if err != nil {
				return err
			}
			if typ == "incremental" {
				summarizer = append(summarizer, waited)
			}
			out, err := backupJSON(bin, repo, url, typ)
			if err != nil {
				return err
			}
			r := res[typ]
			r.s = append(r.s, out.sample)
			r.received = append(r.received, out.Received)
			r.newBytes = append(r.newBytes, out.NewStored)
			return nil
		}()
		os.RemoveAll(repo)
		if err != nil {
			return err
		}
		// Each run's update leaves 5% of the rows dead: without this,
		// autovacuum starts on the table after a few runs and rewrites pages
		// all over it between a run's two backups (incrementals of 350–800
		// MiB instead of 184). Done after the measured backup, outside it.
		for _, sql := range []string{"VACUUM (ANALYZE) accounts", "CHECKPOINT"} {
			if _, err := conn.Exec(ctx, sql); err != nil {
				return fmt.Errorf("%.60s: %w", sql, err)
			}
		}
	}
	fmt.Printf("\n%s\n%-22s %9s %9s %14s %14s %11s   %s\n", phase, "second backup", "median", "CPU", "from server", "newly stored", "peak RSS", "each run: s / MiB from the server")
	for _, typ := range []string{"incremental", "full"} {
		r := res[typ]
		m := median(r.s)
		var each []string
		for i, x := range r.s {
			each = append(each, fmt.Sprintf("%.2f/%.0f", x.wall.Seconds(), mib(r.received[i])))
		}
		fmt.Printf("%-22s %8.2fs %8.2fs %10.1f MiB %10.1f MiB %7.1f MiB   %s\n", "--type "+typ, m.wall.Seconds(), m.cpu.Seconds(), mib(medianInt(r.received)),
			mib(medianInt(r.newBytes)), mib(m.maxRSS), strings.Join(each, " "))
	}
	inc, full := res["incremental"], res["full"]
	fmt.Printf("incremental/full: wall time %.2f, bytes from the server %.3f (goals: ≤ 0.3 and ≤ 0.2)\n",
		median(inc.s).wall.Seconds()/median(full.s).wall.Seconds(), float64(medianInt(inc.received))/float64(medianInt(full.received)))
	var each []string
	withWait := make([]sample, len(inc.s))
	for i, w := range summarizer {
		each = append(each, fmt.Sprintf("%.2f", w.Seconds()))
		withWait[i] = inc.s[i]
		withWait[i].wall += w
	}
	fmt.Printf("the WAL summarizer caught up %s s after the streamer (each incremental run); counted in the incremental's time: wall time %.2f\n",
		strings.Join(each, " "), median(withWait).wall.Seconds()/median(full.s).wall.Seconds())
	return nil
}

// waitSummarized waits until the server's WAL summarizer has summarized up
// to the redo point of the last checkpoint, and says how long that took.
func waitSummarized(ctx context.Context, conn *pgx.Conn) (time.Duration, error) {
	start := time.Now()
	for range 1200 {
		var done bool
		if err := conn.QueryRow(ctx, `SELECT summarized_lsn >= (SELECT redo_lsn FROM pg_control_checkpoint())
			FROM pg_get_wal_summarizer_state()`).Scan(&done); err != nil {
			return 0, err
		}
		if done {
			return time.Since(start), nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("the WAL summarizer did not reach the last checkpoint within 24 s")
}

// streamingRepo makes a repository at repo and starts `tidemark stream`
// into it on a fresh slot, returning once it is connected.
func streamingRepo(ctx context.Context, conn *pgx.Conn, bin, repo, url string) (stop func(), err error) {
	if out, err := exec.Command(bin, "init", "--repo", repo, "--no-encryption").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("init: %v %s", err, out)
	}
	conn.Exec(ctx, "SELECT pg_drop_replication_slot('tidemark') FROM pg_replication_slots WHERE slot_name = 'tidemark'")
	stop, err = startDaemon(exec.Command(bin, "stream", "--repo", repo, "--source", url, "--create-slot", "--log-level", "warn"))
	if err != nil {
		return nil, err
	}
	if err := waitStreaming(ctx, conn); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

// waitStreamed waits until tidemark's streamer flushed the WAL written so far.
func waitStreamed(ctx context.Context, conn *pgx.Conn) error {
	var target string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&target); err != nil {
		return err
	}
	for range 1200 {
		var done bool
		conn.QueryRow(ctx, "SELECT coalesce(bool_or(flush_lsn >= $1::pg_lsn), false) FROM pg_stat_replication WHERE application_name LIKE 'tidemark%'", target).Scan(&done)
		if done {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("tidemark stream did not reach %s within 2 minutes", target)
}

type backupOut struct {
	sample
	Received  int64  `json:"received_bytes"`
	NewStored int64  `json:"new_stored_bytes"`
	Type      string `json:"type"`
}

// backupJSON runs `tidemark backup --json` and reads what it reports.
func backupJSON(bin, repo, url, typ string) (backupOut, error) {
	outFile := filepath.Join(repo, "..", filepath.Base(repo)+".json")
	defer os.Remove(outFile)
	cmd := exec.Command("bash", "-c", fmt.Sprintf("exec %q backup --repo %q --source %q --type %s --fast-checkpoint --jobs 2 --log-level warn --json > %q",
		bin, repo, url, typ, outFile))
	s, _, err := measureCmd(cmd, nil)
	if err != nil {
		return backupOut{}, err
	}
	b, err := os.ReadFile(outFile)
	if err != nil {
		return backupOut{}, err
	}
	out := backupOut{sample: s}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, fmt.Errorf("backup --json: %w", err)
	}
	if out.Type != typ {
		return out, fmt.Errorf("asked for a %s backup, got %s", typ, out.Type)
	}
	return out, nil
}

func medianInt(xs []int64) int64 {
	s := append([]int64(nil), xs...)
	slices.Sort(s)
	return s[len(s)/2]
}
