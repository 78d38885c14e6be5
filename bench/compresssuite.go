package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/all"
)

// compressSuite: what a repository stores of the data shapes that matter,
// side by side with the C zstd at -1 and -3 on the same bytes, each run in
// rotated order (A B C …, B C … A). Tidemark's number goes through a real
// repository (unencrypted, default level): chunks for base backup files
// (aligned 1 MiB for PostgreSQL relation files, content-defined for row and
// BSON streams), 16 MiB objects for WAL and binlog segments. The anchor is
// the whole file through `zstd -T1`, as `mariadb-dump | zstd -1` would be.
// Beside them, klauspost encoder settings alone on the same pieces (1 MiB,
// or 16 MiB for segments), to show what was chosen against what: fastest
// (before issue #17), fastest with literals entropy-coded (the choice),
// default with and without. Speed is MB of input per CPU-second
// (user+sys of the process: per core, so other load on the machine mostly
// drops out); peak RSS as every step's (measureCmd).
func compressSuite(ctx context.Context, dir string, size int64, pgScale, runs int) error {
	fmt.Printf("\ncompress suite: %.0f MiB per generated corpus, pgbench scale %d, %d runs, order rotated each run\n", mib(size), pgScale, runs)
	corpora, err := makeCorpora(ctx, filepath.Join(dir, "corpora"), size, pgScale)
	if err != nil {
		return err
	}
	for i := range corpora {
		fi, err := os.Stat(corpora[i].path)
		if err != nil {
			return err
		}
		corpora[i].size = fi.Size()
	}
	steps := []string{"tidemark", "zstd -1", "zstd -3", "fastest", "fastest+lit", "default", "default+lit"}
	results := map[string]map[string]*compressResult{}
	for _, c := range corpora {
		results[c.name] = map[string]*compressResult{}
		for run := range runs {
			for i := range steps {
				step := steps[(i+run)%len(steps)]
				s, stored, err := compressStep(ctx, dir, c, step)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", c.name, step, err)
				}
				r := results[c.name][step]
				if r == nil {
					r = &compressResult{}
					results[c.name][step] = r
				}
				r.samples = append(r.samples, s)
				r.stored = stored
			}
		}
	}
	compressReport(corpora, steps, results)
	return nil
}

type compressResult struct {
	samples []sample
	stored  int64
}

func makeCorpora(ctx context.Context, dir string, size int64, pgScale int) ([]corpus, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	tar, wal, err := postgresCorpora(ctx, dir, pgScale, size)
	if err != nil {
		return nil, fmt.Errorf("pgbench corpora: %w", err)
	}
	binlogs, err := binlogCorpora(ctx, dir, size, sysbenchTable(), md5Table())
	if err != nil {
		return nil, fmt.Errorf("binlog corpora: %w", err)
	}
	for _, t := range []rowTable{sysbenchTable(), md5Table(), mixedTable()} {
		if err := writeRowFile(p(t.name+".rows"), t, size); err != nil {
			return nil, err
		}
	}
	if err := writeBSONFile(p("docs.bson"), size); err != nil {
		return nil, err
	}
	if err := writeRandomFile(p("random"), size); err != nil {
		return nil, err
	}
	return []corpus{
		{name: "pgbench tar", path: tar, mode: "aligned"},
		{name: "pgbench WAL", path: wal, mode: "segments"},
		{name: "sysbench rows", path: p("sbtest1.rows"), mode: "cdc"},
		{name: "sysbench binlog", path: binlogs[0], mode: "segments"},
		{name: "md5 rows", path: p("md5rows.rows"), mode: "cdc"},
		{name: "md5 binlog", path: binlogs[1], mode: "segments"},
		{name: "uuid/sha2/JSON rows", path: p("mixed.rows"), mode: "cdc"},
		{name: "BSON documents", path: p("docs.bson"), mode: "cdc"},
		{name: "random", path: p("random"), mode: "cdc"},
	}, nil
}

// compressStep runs one step on one corpus in a process of its own and
// returns its sample and the bytes it stored.
func compressStep(ctx context.Context, dir string, c corpus, step string) (sample, int64, error) {
	switch step {
	case "tidemark":
		repo := filepath.Join(dir, "compress-repo")
		defer os.RemoveAll(repo)
		store, err := all.Open(ctx, "file://"+repo)
		if err != nil {
			return sample{}, 0, err
		}
		if _, err := archive.Init(ctx, store, archive.InitOptions{NoEncrypt: true}); err != nil {
			return sample{}, 0, err
		}
		s, res, err := runMeasured(nil, "store", "file://"+repo, c.mode, c.path)
		return s, res.NewStored, err
	case "zstd -1", "zstd -3":
		out := filepath.Join(dir, "compress-out.zst")
		defer os.Remove(out)
		s, _, err := measureCmd(exec.CommandContext(ctx, "zstd", "-q", "-f", "-T1", step[len("zstd "):], c.path, "-o", out), nil)
		if err != nil {
			return s, 0, err
		}
		fi, err := os.Stat(out)
		if err != nil {
			return s, 0, err
		}
		return s, fi.Size(), nil
	default:
		self, err := os.Executable()
		if err != nil {
			return sample{}, 0, err
		}
		s, res, err := measureCmd(exec.CommandContext(ctx, self, childArg, "encode", step, c.mode, c.path), nil)
		return s, res.NewStored, err
	}
}

// childStore stores a corpus through a repository the way its data takes:
// one file of chunks (with 2 jobs, as the postgres suite's backups), or
// 16 MiB segment objects put one after another, as a streamer does.
func childStore(ctx context.Context, repo *archive.Repository, mode, path string) (childResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return childResult{}, err
	}
	defer f.Close()
	if mode == "segments" {
		var res childResult
		buf := make([]byte, 16<<20)
		for i := 0; ; i++ {
			n, err := io.ReadFull(f, buf)
			if n > 0 {
				st, err := repo.Put(ctx, fmt.Sprintf("blob/%06d", i), archive.KindSegment, bytes.NewReader(buf[:n]))
				if err != nil {
					return res, err
				}
				res.Logical += st.Plain
				res.NewStored += st.Stored
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return res, nil
			}
			if err != nil {
				return res, err
			}
		}
	}
	cm := archive.ContentDefined
	if mode == "aligned" {
		cm = archive.Aligned
	}
	w, err := repo.NewChunkWriter(ctx, 2)
	if err != nil {
		return childResult{}, err
	}
	if _, err := w.WriteFile(ctx, f, cm); err != nil {
		return childResult{}, err
	}
	if err := w.Commit(ctx); err != nil {
		return childResult{}, err
	}
	st := w.Stats()
	return childResult{Logical: st.Logical, NewStored: st.NewStored}, nil
}

// encodeVariants are klauspost settings compared on their own. Chunks are
// encoded as the chunk codec does (one EncodeAll per 1 MiB piece, 2 MiB
// window), segments with the library's default window.
var encodeVariants = map[string][]zstd.EOption{
	"fastest":     {zstd.WithEncoderLevel(zstd.SpeedFastest)},
	"fastest+lit": {zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithAllLitEntropyCompression(true)},
	"default":     {zstd.WithEncoderLevel(zstd.SpeedDefault)},
	"default+lit": {zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithAllLitEntropyCompression(true)},
}

// childEncode: encode VARIANT MODE FILE, printing the compressed size.
func childEncode(args []string) error {
	if len(args) != 3 || encodeVariants[args[0]] == nil {
		return errors.New("usage: encode fastest|fastest+lit|default|default+lit MODE FILE")
	}
	opts := append([]zstd.EOption{zstd.WithEncoderCRC(false), zstd.WithEncoderConcurrency(1)}, encodeVariants[args[0]]...)
	piece := archive.AlignedChunkSize
	if args[1] == "segments" {
		piece = 16 << 20
	} else {
		opts = append(opts, zstd.WithWindowSize(2<<20), zstd.WithLowerEncoderMem(true))
	}
	enc, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		return err
	}
	f, err := os.Open(args[2])
	if err != nil {
		return err
	}
	defer f.Close()
	var res childResult
	buf, out := make([]byte, piece), make([]byte, 0, piece+piece/8)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			out = enc.EncodeAll(buf[:n], out[:0])
			res.Logical += int64(n)
			res.NewStored += int64(len(out))
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

func compressReport(corpora []corpus, steps []string, results map[string]map[string]*compressResult) {
	fmt.Printf("\nstored MiB (tidemark: through a repository, envelope included; zstd: whole file; others: klauspost alone on the same pieces)\n")
	fmt.Printf("%-20s %8s %9s", "corpus", "input", "path")
	for _, s := range steps {
		fmt.Printf(" %11s", s)
	}
	fmt.Printf(" %9s %9s\n", "tm/zstd-1", "tm/zstd-3")
	worst, worstName := 0.0, ""
	for _, c := range corpora {
		r := results[c.name]
		fmt.Printf("%-20s %8.1f %9s", c.name, mib(c.size), c.mode)
		for _, s := range steps {
			fmt.Printf(" %11.2f", mib(r[s].stored))
		}
		z1 := float64(r["tidemark"].stored) / float64(r["zstd -1"].stored)
		fmt.Printf(" %9.3f %9.3f\n", z1, float64(r["tidemark"].stored)/float64(r["zstd -3"].stored))
		if z1 > worst {
			worst, worstName = z1, c.name
		}
	}
	fmt.Printf("\nMB of input per CPU-second (median), and peak RSS\n%-20s", "corpus")
	for _, s := range steps {
		fmt.Printf(" %11s", s)
	}
	fmt.Printf(" %12s %12s\n", "RSS tidemark", "RSS zstd -1")
	for _, c := range corpora {
		r := results[c.name]
		fmt.Printf("%-20s", c.name)
		for _, s := range steps {
			fmt.Printf(" %11.0f", float64(c.size)/1e6/medianCPU(r[s].samples).Seconds())
		}
		fmt.Printf(" %8.1f MiB %8.1f MiB\n", mib(median(r["tidemark"].samples).maxRSS), mib(median(r["zstd -1"].samples).maxRSS))
	}
	verdict := "OK"
	if worst > 1.05 {
		verdict = "FAIL"
	}
	fmt.Printf("\nworst tidemark/zstd -1 stored: %.3f (%s), target ≤ 1.05: %s\n", worst, worstName, verdict)
}

// medianCPU is the median CPU time of samples.
func medianCPU(xs []sample) time.Duration {
	c := make([]time.Duration, len(xs))
	for i, x := range xs {
		c[i] = x.cpu
	}
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c[len(c)/2]
}
