package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"filippo.io/age"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/all"
)

const childArg = "__child"

// childResult is what a child prints on stdout as JSON.
type childResult struct {
	Logical   int64  `json:"logical"`
	NewStored int64  `json:"new_stored"`
	SHA256    string `json:"sha256"`
}

// runMeasured runs one step in a child process and returns its wall time,
// peak RSS and result. The child is this binary.
func runMeasured(env []string, args ...string) (sample, childResult, error) {
	self, err := os.Executable()
	if err != nil {
		return sample{}, childResult{}, err
	}
	return measureCmd(exec.Command(self, append([]string{childArg}, args...)...), env)
}

// runMeasuredFed is runMeasured with stdin fed by a generator process, whose
// memory is not counted.
func runMeasuredFed(env []string, size int64, args ...string) (sample, childResult, error) {
	self, err := os.Executable()
	if err != nil {
		return sample{}, childResult{}, err
	}
	gen := exec.Command(self, childArg, "gen", strconv.FormatInt(size, 10))
	pipe, err := gen.StdoutPipe()
	if err != nil {
		return sample{}, childResult{}, err
	}
	gen.Stderr = os.Stderr
	if err := gen.Start(); err != nil {
		return sample{}, childResult{}, err
	}
	cmd := exec.Command(self, append([]string{childArg}, args...)...)
	cmd.Stdin = pipe
	s, res, err := measureCmd(cmd, env)
	if werr := gen.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("generator: %w", werr)
	}
	return s, res, err
}

func measureCmd(cmd *exec.Cmd, env []string) (sample, childResult, error) {
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	rssFile := startedByTime(cmd)
	defer removeIfSet(rssFile)
	start := time.Now()
	out, err := cmd.Output()
	s := sample{wall: time.Since(start)}
	if err != nil {
		return s, childResult{}, fmt.Errorf("%v: %w", cmd.Args, err)
	}
	s.maxRSS = ranPeakRSS(cmd, rssFile)
	s.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	var res childResult
	if len(out) > 0 && out[0] == '{' {
		if err := json.Unmarshal(out, &res); err != nil {
			return s, res, fmt.Errorf("child output %q: %w", out, err)
		}
	} else {
		res.SHA256 = string(out)
	}
	return s, res, nil
}

// startedByTime makes /usr/bin/time start cmd and write its peak RSS to a
// file, whose name it returns ("" when there is no /usr/bin/time). Linux
// folds the memory of the process that exec'd a program into the program's
// ru_maxrss, so every child of this process (tens of MiB) would report at
// least this process's peak; time is a small process.
func startedByTime(cmd *exec.Cmd) string {
	const gnuTime = "/usr/bin/time"
	if _, err := os.Stat(gnuTime); err != nil || cmd.Err != nil {
		return ""
	}
	f, err := os.CreateTemp("", "bench-rss-")
	if err != nil {
		return ""
	}
	f.Close()
	cmd.Args = append([]string{gnuTime, "-f", "%M", "-o", f.Name(), cmd.Path}, cmd.Args[1:]...)
	cmd.Path = gnuTime
	return f.Name()
}

// ranPeakRSS is the peak RSS in bytes of cmd, which ran: what /usr/bin/time
// wrote to rssFile (its last line, in KiB), else wait4's rusage (the
// largest resident set of the child or any of its reaped descendants: for
// a shell pipeline, its largest member).
func ranPeakRSS(cmd *exec.Cmd, rssFile string) int64 {
	if b, err := os.ReadFile(rssFile); rssFile != "" && err == nil {
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if kb, err := strconv.ParseInt(lines[len(lines)-1], 10, 64); err == nil {
			return kb << 10
		}
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss << 10
	}
	return 0
}

func removeIfSet(name string) {
	if name != "" {
		os.Remove(name)
	}
}

func runChild(ctx context.Context, args []string) error {
	if len(args) == 2 && args[0] == "gen" { // gen SIZE: mixed data on stdout
		n, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil {
			return err
		}
		_, err = io.Copy(os.Stdout, io.LimitReader(newCycleReader(), n))
		return err
	}
	if len(args) > 0 && args[0] == "encode" { // encode VARIANT MODE FILE: no repository
		return childEncode(args[1:])
	}
	if len(args) < 2 {
		return errors.New("usage: __child OP REPO …")
	}
	op, repoURL := args[0], args[1]
	store, err := all.Open(ctx, repoURL)
	if err != nil {
		return err
	}
	keys := archive.Keys{}
	if f := os.Getenv("BENCH_IDENTITY_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		id, err := age.ParseX25519Identity(string(trimNL(b)))
		if err != nil {
			return err
		}
		keys.Identities = []age.Identity{id}
	}
	repo, err := archive.Open(ctx, store, keys)
	if err != nil {
		return err
	}
	var res childResult
	switch op {
	case "backup": // backup REPO INPUT
		res, err = childBackup(ctx, repo, args[2])
	case "restore": // restore REPO
		res, err = childRestore(ctx, repo)
	case "object-put": // object-put REPO < data
		var st archive.PutStat
		st, err = repo.Put(ctx, "blob/large", archive.KindBlob, os.Stdin)
		res = childResult{Logical: st.Plain, NewStored: st.Stored, SHA256: hex.EncodeToString(st.SHA256[:])}
	case "store": // store REPO MODE FILE
		if len(args) != 4 {
			return errors.New("usage: __child store REPO MODE FILE")
		}
		res, err = childStore(ctx, repo, args[2], args[3])
	case "object-get": // object-get REPO
		res, err = childGet(ctx, repo)
	default:
		return fmt.Errorf("unknown op %q", op)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

func childBackup(ctx context.Context, repo *archive.Repository, input string) (childResult, error) {
	f, err := os.Open(input)
	if err != nil {
		return childResult{}, err
	}
	defer f.Close()
	start := time.Now()
	w, err := repo.NewChunkWriter(ctx, 4)
	if err != nil {
		return childResult{}, err
	}
	refs, err := w.WriteFile(ctx, f, archive.ContentDefined)
	if err != nil {
		return childResult{}, err
	}
	if err := w.Commit(ctx); err != nil {
		return childResult{}, err
	}
	st := w.Stats()
	m := &archive.Manifest{ID: archive.NewManifestID(start), Engine: "bench", Type: "full", Started: start,
		Finished: time.Now(), Stats: st, Files: []archive.FileEntry{{Path: "input", Size: st.Logical, Chunks: refs}}}
	if err := repo.CommitManifest(ctx, m); err != nil {
		return childResult{}, err
	}
	return childResult{Logical: st.Logical, NewStored: st.NewStored}, nil
}

func childRestore(ctx context.Context, repo *archive.Repository) (childResult, error) {
	ids, err := repo.ListManifests(ctx)
	if err != nil || len(ids) == 0 {
		return childResult{}, fmt.Errorf("no backup to restore: %v", err)
	}
	m, err := repo.ReadManifest(ctx, ids[0])
	if err != nil {
		return childResult{}, err
	}
	h := sha256.New()
	cw := &countWriter{w: h}
	if err := repo.RestoreFile(ctx, m.Files[0], cw, 4); err != nil {
		return childResult{}, err
	}
	return childResult{Logical: cw.n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func childGet(ctx context.Context, repo *archive.Repository) (childResult, error) {
	rc, err := repo.Get(ctx, "blob/large", archive.KindBlob)
	if err != nil {
		return childResult{}, err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return childResult{}, err
	}
	return childResult{Logical: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// mixedReader yields deterministic data, alternating 1 MiB of random bytes
// and 1 MiB of random words and numbers: about 2:1 with zstd, like real
// tables, and with no repeated blocks to flatter deduplication.
type mixedReader struct {
	rng   *rand.ChaCha8
	off   int64
	block []byte
}

var words = []string{"order", "customer", "2026-11-25", "shipped", "pending", "NULL", "eu-west", "42.50",
	"tidemark", "invoice", "refund", "alice@example.com", "bob", "warehouse", "express", "0.19"}

func newMixedReader(seed byte) *mixedReader {
	var s [32]byte
	s[0] = seed
	return &mixedReader{rng: rand.NewChaCha8(s), block: make([]byte, 1<<20)}
}

func (m *mixedReader) fill() {
	if (m.off>>20)%2 == 0 {
		m.rng.Read(m.block)
		return
	}
	b := m.block[:0]
	var r [8]byte
	for len(b) < 1<<20 {
		m.rng.Read(r[:])
		b = append(b, words[int(r[0])%len(words)]...)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(r[1])<<8|uint64(r[2]), 10)
		b = append(b, ',', ' ')
	}
	m.block = b[:1<<20]
}

func (m *mixedReader) Read(p []byte) (int, error) {
	within := int(m.off & (1<<20 - 1))
	if within == 0 {
		m.fill()
	}
	n := copy(p, m.block[within:])
	m.off += int64(n)
	return n, nil
}

// cycleReader repeats 64 MiB of mixed data: fast enough that generating it
// does not dominate the measurement, and a period far beyond zstd's window
// so repetition does not flatter compression. Only for single objects: the
// chunked suites use non-repeating data so deduplication is not flattered.
type cycleReader struct {
	pattern []byte
	off     int
}

func newCycleReader() *cycleReader {
	p := make([]byte, 64<<20)
	io.ReadFull(newMixedReader(1), p)
	return &cycleReader{pattern: p}
}

func (c *cycleReader) Read(p []byte) (int, error) {
	n := copy(p, c.pattern[c.off:])
	c.off = (c.off + n) % len(c.pattern)
	return n, nil
}
