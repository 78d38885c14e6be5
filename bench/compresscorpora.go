package main

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tidemark/tidemark/internal/testenv"
)

// corpus is one file of the compress suite and the write path its kind of
// data takes in a repository.
type corpus struct {
	name string
	path string
	mode string // "aligned" or "cdc" (base backup chunks), "segments" (16 MiB stream objects)
	size int64
}

// rowTable generates the rows of one table deterministically, so the same
// rows can be written in Tidemark's row format and inserted into MariaDB.
type rowTable struct {
	name   string
	create string   // CREATE TABLE … for MariaDB
	cols   []string // column names; values are int64 (kind int) or string (kind bytes)
	rows   func() func(id int64) []any
	// fill, when set, inserts rows [from, to] server-side (INSERT …
	// SELECT): the binlog then holds row images only, without the
	// statement text MariaDB annotates client inserts with.
	fill func(from, to int64) string
}

// sysbenchTable is sysbench's sbtest: c and pad are random 11-digit groups
// joined by '-', the shape that showed the issue (few matches, 10 symbols).
func sysbenchTable() rowTable {
	return rowTable{name: "sbtest1", cols: []string{"id", "k", "c", "pad"},
		create: "CREATE TABLE sbtest1 (id INT PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL, KEY (k))",
		rows: func() func(int64) []any {
			r := rand.New(rand.NewPCG(17, 1))
			groups := func(n int) string {
				b := make([]byte, 0, n*12)
				for g := range n {
					if g > 0 {
						b = append(b, '-')
					}
					for range 11 {
						b = append(b, byte('0'+r.IntN(10)))
					}
				}
				return string(b)
			}
			return func(id int64) []any { return []any{id, int64(r.IntN(1_000_000)), groups(10), groups(5)} }
		}}
}

// md5Table is `SELECT seq, md5(seq)`: 32 hex digits per row.
func md5Table() rowTable {
	return rowTable{name: "md5rows", cols: []string{"id", "v"},
		create: "CREATE TABLE md5rows (id INT PRIMARY KEY, v CHAR(32) NOT NULL)",
		fill: func(from, to int64) string {
			return fmt.Sprintf("INSERT INTO md5rows SELECT seq, md5(seq) FROM seq_%d_to_%d", from, to)
		},
		rows: func() func(int64) []any {
			return func(id int64) []any {
				s := md5.Sum([]byte(strconv.FormatInt(id, 10)))
				return []any{id, hex.EncodeToString(s[:])}
			}
		}}
}

// mixedTable: a uuid, a sha2 hex, a JSON document and a decimal per row.
func mixedTable() rowTable {
	return rowTable{name: "mixed", cols: []string{"id", "u", "h", "doc", "n"},
		create: "CREATE TABLE mixed (id BIGINT PRIMARY KEY, u UUID, h CHAR(64), doc JSON, n DECIMAL(14,2))",
		rows: func() func(int64) []any {
			r := rand.New(rand.NewPCG(3, 3))
			cities := []string{"Lisbon", "Oslo", "Turin", "Ghent", "Kraków", "Porto", "Lyon", "Riga"}
			return func(id int64) []any {
				var u [16]byte
				binary.LittleEndian.PutUint64(u[:], r.Uint64())
				binary.LittleEndian.PutUint64(u[8:], r.Uint64())
				h := sha256.Sum256(u[:])
				doc := fmt.Sprintf(`{"user": %d, "city": "%s", "amount": %.2f, "tags": ["t%d", "t%d"], "active": %t, "at": "2026-%02d-%02dT%02d:%02d:%02dZ"}`,
					r.IntN(1e6), cities[r.IntN(len(cities))], r.Float64()*1e4, r.IntN(50), r.IntN(50), r.IntN(2) == 0,
					1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60))
				return []any{id, fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]),
					hex.EncodeToString(h[:]), doc, strconv.FormatFloat(r.Float64()*1e9, 'f', 2, 64)}
			}
		}}
}

// writeRowFile writes rows of t in Tidemark's MySQL row format (version 1,
// docs/format.md) until about size bytes: encoded here from the spec rather
// than with the basebackup package's writer, which is being moved.
func writeRowFile(path string, t rowTable, size int64) error {
	return writeCorpusFile(path, func(w *bufio.Writer) error { return writeRows(w, t, size) })
}

func writeRows(w *bufio.Writer, t rowTable, size int64) error {
	next := t.rows()
	first := next(1)
	b := append([]byte("TMRW"), 1)
	b = binary.AppendUvarint(b, uint64(len(t.cols)))
	for i, c := range t.cols {
		kind := byte(5) // bytes
		if _, ok := first[i].(int64); ok {
			kind = 1 // int
		}
		b = append(b, kind)
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
	}
	var n int64
	id := int64(1)
	for row := first; n < size; row = next(id) {
		b = append(b, 1)
		b = append(b, make([]byte, (len(row)+7)/8)...) // no NULLs
		for _, v := range row {
			switch v := v.(type) {
			case int64:
				b = binary.AppendVarint(b, v)
			case string:
				b = binary.AppendUvarint(b, uint64(len(v)))
				b = append(b, v...)
			}
		}
		n += int64(len(b))
		if _, err := w.Write(b); err != nil {
			return err
		}
		b = b[:0]
		id++
	}
	_, err := w.Write(binary.AppendUvarint([]byte{0}, uint64(id-1)))
	return err
}

// writeBSONFile writes documents of the mongodb suite's shape, raw BSON
// back to back as a MongoDB base backup stores a collection.
func writeBSONFile(path string, size int64) error {
	return writeCorpusFile(path, func(w *bufio.Writer) error {
		r := rand.New(rand.NewPCG(1, 2))
		for i, n := 0, int64(0); n < size; i++ {
			b, err := bson.Marshal(mixedDoc(r, i))
			if err != nil {
				return err
			}
			n += int64(len(b))
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		return nil
	})
}

func writeRandomFile(path string, size int64) error {
	return writeCorpusFile(path, func(w *bufio.Writer) error {
		_, err := io.Copy(w, io.LimitReader(rand.NewChaCha8([32]byte{9}), size))
		return err
	})
}

// writeCorpusFile creates path with what fill writes.
func writeCorpusFile(path string, fill func(*bufio.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	if err := fill(w); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// postgresCorpora makes a pgbench database of the given scale and returns
// its data directory as pg_basebackup's tar, and about size bytes of raw
// WAL segments received (pg_receivewal) while pgbench ran on it.
func postgresCorpora(ctx context.Context, dir string, scale int, size int64) (tar, wal string, err error) {
	pg, err := testenv.StartPostgres(testenv.PostgresOptions{})
	if err != nil {
		return "", "", err
	}
	defer pg.Destroy()
	url := pg.URL("postgres")
	if out, err := exec.CommandContext(ctx, "pgbench", "-i", "-q", "-s", strconv.Itoa(scale), url).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}
	bbDir := filepath.Join(dir, "pgbench-tar")
	if out, err := exec.CommandContext(ctx, "pg_basebackup", "-d", url, "-D", bbDir, "-Ft", "-X", "none", "-c", "fast").CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("pg_basebackup: %v\n%s", err, out)
	}
	walDir := filepath.Join(dir, "pgbench-wal")
	os.MkdirAll(walDir, 0o700)
	stop, err := startDaemon(exec.Command("pg_receivewal", "-D", walDir, "-d", url, "--no-loop"))
	if err != nil {
		return "", "", err
	}
	defer stop()
	const segSize = 16 << 20
	need := int((size + segSize - 1) / segSize)
	var segs []string
	for deadline := time.Now().Add(5 * time.Minute); len(segs) < need; {
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("pgbench produced %d of %d WAL segments in 5 minutes", len(segs), need)
		}
		if out, err := exec.CommandContext(ctx, "pgbench", "-n", "-c", "4", "-j", "2", "-T", "5", url).CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("pgbench: %v\n%s", err, out)
		}
		if segs, err = filepath.Glob(filepath.Join(walDir, strings.Repeat("[0-9A-F]", 24))); err != nil {
			return "", "", err
		}
	}
	sort.Strings(segs)
	wal = filepath.Join(dir, "pgbench.wal")
	return filepath.Join(bbDir, "base.tar"), wal, concatFiles(wal, segs[:need])
}

func concatFiles(dst string, srcs []string) error {
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	for _, s := range srcs {
		in, err := os.Open(s)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, in)
		in.Close()
		if err != nil {
			return err
		}
	}
	return out.Close()
}

// binlogCorpora inserts rows of each table into MariaDB (row-based binlog;
// 1,000 rows per INSERT and transaction, or 100,000 per server-side fill)
// until its binlog file holds about size bytes, one binlog file per table,
// and returns their paths.
func binlogCorpora(ctx context.Context, dir string, size int64, tables ...rowTable) ([]string, error) {
	db, err := testenv.StartMariaDB(testenv.MariaDBOptions{Args: []string{"--max-binlog-size=1073741824", "--sync-binlog=0",
		"--innodb-flush-log-at-trx-commit=0", "--innodb-buffer-pool-size=256M"}})
	if err != nil {
		return nil, fmt.Errorf("start MariaDB: %w", err)
	}
	defer db.Destroy()
	c, err := db.Conn()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	for _, q := range []string{"CREATE DATABASE bench", "USE bench", "RESET MASTER"} {
		if _, err := c.Execute(q); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	var paths []string
	for _, t := range tables {
		if _, err := c.Execute(t.create); err != nil {
			return nil, fmt.Errorf("%s: %w", t.create, err)
		}
		if _, err := c.Execute("FLUSH BINARY LOGS"); err != nil {
			return nil, err
		}
		next := t.rows()
		var file string
		for id, pos := int64(1), int64(0); pos < size; {
			var q strings.Builder
			if t.fill != nil {
				q.WriteString(t.fill(id, id+99_999))
				id += 100_000
			} else {
				fmt.Fprintf(&q, "INSERT INTO %s VALUES ", t.name)
				for i := range 1000 {
					if i > 0 {
						q.WriteByte(',')
					}
					q.WriteString(sqlRow(next(id)))
					id++
				}
			}
			if _, err := c.Execute(q.String()); err != nil {
				return nil, fmt.Errorf("insert into %s: %w", t.name, err)
			}
			r, err := c.Execute("SHOW MASTER STATUS")
			if err != nil {
				return nil, err
			}
			file, _ = r.GetString(0, 0)
			pos, _ = r.GetInt(0, 1)
		}
		if _, err := c.Execute("FLUSH BINARY LOGS"); err != nil {
			return nil, err
		}
		dst := filepath.Join(dir, t.name+".binlog")
		if err := concatFiles(dst, []string{filepath.Join(db.DataDir, file)}); err != nil {
			return nil, err
		}
		paths = append(paths, dst)
	}
	return paths, nil
}

// sqlRow is one row as a VALUES tuple; the generators' strings hold no
// quotes or backslashes.
func sqlRow(row []any) string {
	parts := make([]string, len(row))
	for i, v := range row {
		switch v := v.(type) {
		case int64:
			parts[i] = strconv.FormatInt(v, 10)
		case string:
			parts[i] = "'" + v + "'"
		}
	}
	return "(" + strings.Join(parts, ",") + ")"
}
