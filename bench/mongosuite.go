package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"filippo.io/age"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/file"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/oplog"
)

// mongoSuite: base backup and restore of a FerretDB database of docs
// mixed documents (uuids, random text, numbers, nested arrays: ~2–3:1
// with zstd), then oplog archive lag under a write load and the replay
// rate of restore --latest against the rate at which the source accepted
// the same writes, and the CPU an idle source spends with and without the
// streamer attached. There is no mongodump on these machines to pair
// with, so only tidemark's own numbers are printed.
func mongoSuite(ctx context.Context, dir string, docs, writes int, idle time.Duration, runs int) error {
	bin, err := filepath.Abs("bin/tidemark")
	if err != nil {
		return err
	}
	src, err := testenv.StartFerretDB()
	if err != nil {
		return fmt.Errorf("start FerretDB (run `make deps`): %w", err)
	}
	defer src.Destroy()
	c, err := src.Client(ctx)
	if err != nil {
		return err
	}
	defer c.Disconnect(ctx)
	fmt.Printf("\nmongodb suite: FerretDB %s, %d mixed documents, %d runs\n", testenv.FerretDBVersion, docs, runs)
	start := time.Now()
	if err := loadMixed(ctx, c.Database("bench").Collection("docs"), docs); err != nil {
		return err
	}
	fmt.Printf("loaded in %s\n", time.Since(start).Round(time.Millisecond))
	if idle > 0 {
		if err := idleCPU(bin, dir, src, idle); err != nil {
			return err
		}
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	keyFile := filepath.Join(dir, "mongo-key")
	if err := os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600); err != nil {
		return err
	}
	var backups, restores []sample
	var lags []time.Duration
	var logical int64
	var replayed, restoredDocs int
	var accepted, replays []time.Duration
	for run := range runs {
		repo := filepath.Join(dir, fmt.Sprintf("mongo-repo-%d", run))
		if err := initRepo(ctx, "file://"+repo, nil, id); err != nil {
			return err
		}
		stream := exec.Command(bin, "stream", "--repo", repo, "--source", src.URL())
		stream.Stderr = os.Stderr
		if err := stream.Start(); err != nil {
			return err
		}
		s, out, err := measureTidemark(bin, "backup", "--repo", repo, "--source", src.URL(), "--json")
		if err != nil {
			stream.Process.Kill()
			return err
		}
		var b struct {
			Logical int64 `json:"logical_bytes"`
		}
		json.Unmarshal(out, &b)
		logical = b.Logical
		backups = append(backups, s)
		l, err := writeLoad(ctx, c, repo, id, 20, 20)
		if err == nil && writes > 0 {
			var took time.Duration
			if took, err = mixedWrites(ctx, c, run, writes); err == nil {
				accepted = append(accepted, took)
				err = waitOplogArchived(ctx, c, repo, id)
			}
		}
		stream.Process.Signal(syscall.SIGTERM)
		stream.Wait()
		if err != nil {
			return err
		}
		lags = append(lags, l...)
		fmt.Printf("run %d: backup %s, write load done\n", run, s.wall.Round(time.Millisecond))
		target, err := startTarget()
		if err != nil {
			return err
		}
		s, out, err = measureTidemark(bin, "restore", "--repo", repo, "--identity-file", keyFile, "--target", target.URL(), "--latest")
		target.Destroy()
		if err != nil {
			return err
		}
		restores = append(restores, s)
		if m := regexp.MustCompile(`, (\d+) documents\) and replayed (\d+) oplog.*replay ([0-9.]+)s\)`).FindSubmatch(out); m != nil {
			restoredDocs, _ = strconv.Atoi(string(m[1]))
			replayed, _ = strconv.Atoi(string(m[2]))
			secs, _ := strconv.ParseFloat(string(m[3]), 64)
			replays = append(replays, time.Duration(secs*float64(time.Second)))
		}
	}
	b, r := median(backups), median(restores)
	fmt.Printf("\n%-16s %10s %12s %10s %12s\n", "step", "median", "documents/s", "MiB/s", "peak RSS")
	fmt.Printf("%-16s %10s %12.0f %10.1f %9.0f MiB\n", "backup", b.wall.Round(time.Millisecond), float64(docs)/b.wall.Seconds(), mib(logical)/b.wall.Seconds(), mib(b.maxRSS))
	fmt.Printf("%-16s %10s %12.0f %10.1f %9.0f MiB   (load %d documents + replay %d ops)\n", "restore --latest", r.wall.Round(time.Millisecond),
		float64(restoredDocs)/r.wall.Seconds(), mib(logical)/r.wall.Seconds(), mib(r.maxRSS), restoredDocs, replayed)
	if len(accepted) > 0 && len(replays) > 0 {
		a, rp := medianDur(accepted), medianDur(replays)
		fmt.Printf("source accepted %d mixed writes (single inserts, $set, replaceOne, deletes; one client) in %s: %.0f/s\n",
			writes, a.Round(time.Millisecond), float64(writes)/a.Seconds())
		fmt.Printf("restore --latest replayed %d oplog entries in %s: %.0f/s, %.2f× the time the source took to accept them (goal ≤ 0.5)\n",
			replayed, rp.Round(time.Millisecond), float64(replayed)/rp.Seconds(), rp.Seconds()/a.Seconds()*float64(writes)/float64(max(replayed, 1)))
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	if len(lags) > 0 {
		fmt.Printf("oplog archive lag (write acknowledged → durable in the repository, 1 s flush): p50 %s, p99 %s, max %s over %d batches\n",
			lags[len(lags)/2].Round(time.Millisecond), lags[len(lags)*99/100].Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond), len(lags))
	}
	return nil
}

// measureTidemark runs the tidemark binary as a measured child.
func measureTidemark(bin string, args ...string) (sample, []byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	rssFile := startedByTime(cmd)
	defer removeIfSet(rssFile)
	start := time.Now()
	out, err := cmd.Output()
	s := sample{wall: time.Since(start)}
	if err != nil {
		return s, out, fmt.Errorf("tidemark %v: %w", args, err)
	}
	s.maxRSS = ranPeakRSS(cmd, rssFile)
	return s, out, nil
}

func loadMixed(ctx context.Context, coll *mongo.Collection, n int) error {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < n; {
		var batch []any
		for ; len(batch) < 1000 && i < n; i++ {
			batch = append(batch, mixedDoc(r, i))
		}
		if _, err := coll.InsertMany(ctx, batch); err != nil {
			return fmt.Errorf("load: %w", err)
		}
	}
	return nil
}

// mixedDoc is document i of the mixed collection (also the compress
// suite's BSON corpus).
func mixedDoc(r *rand.Rand, i int) bson.D {
	words := [...]string{"tide", "mark", "oplog", "ferret", "harbour", "anchor", "restore", "point", "time", "segment"}
	text := ""
	for range 8 + r.IntN(24) {
		text += words[r.IntN(len(words))] + " "
	}
	return bson.D{{Key: "_id", Value: i}, {Key: "uuid", Value: fmt.Sprintf("%016x%016x", r.Uint64(), r.Uint64())},
		{Key: "text", Value: text}, {Key: "n", Value: r.Float64() * 1e6},
		{Key: "tags", Value: bson.A{words[r.IntN(10)], r.IntN(100)}}, {Key: "at", Value: bson.DateTime(1764500000000 + int64(i))}}
}

// writeLoad runs batches of $set updates and measures, per batch, how long
// after the last write was acknowledged the repository holds it.
func writeLoad(ctx context.Context, c *mongo.Client, repoDir string, id *age.X25519Identity, batches, perBatch int) ([]time.Duration, error) {
	store, err := file.Open(repoDir)
	if err != nil {
		return nil, err
	}
	repo, err := archive.Open(ctx, store, archive.Keys{Identities: []age.Identity{id}})
	if err != nil {
		return nil, err
	}
	coll := c.Database("bench").Collection("docs")
	var lags []time.Duration
	for b := range batches {
		for i := range perBatch {
			if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: (b*perBatch + i) % 1000}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: b}}}}); err != nil {
				return nil, err
			}
		}
		acked := time.Now()
		newest, _, err := oplog.Newest(ctx, c)
		if err != nil {
			return nil, err
		}
		for {
			chain, err := repo.ReadStream(ctx, oplog.StreamName("rs0"))
			if err != nil {
				return nil, err
			}
			if last, ok := chain.Last(); ok {
				if end, err := oplog.ParseTS(last.End); err == nil && !end.Less(newest) {
					break
				}
			}
			if time.Since(acked) > time.Minute {
				return nil, fmt.Errorf("oplog up to %s not archived within a minute", newest)
			}
			time.Sleep(10 * time.Millisecond)
		}
		lags = append(lags, time.Since(acked))
	}
	return lags, nil
}

// startTarget starts the restore target as FerretDB runs by default.
func startTarget() (*testenv.FerretDB, error) { return testenv.StartFerretDBDefault() }

func medianDur(xs []time.Duration) time.Duration {
	s := append([]time.Duration(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// mixedWrites sends n single writes from one client — 40% inserts of new
// documents, 30% $set updates, 15% replaceOne, 15% deletes, over the
// documents the base holds and the new ones — and returns how long the
// source took to accept them.
func mixedWrites(ctx context.Context, c *mongo.Client, run, n int) (time.Duration, error) {
	coll := c.Database("bench").Collection("docs")
	r := rand.New(rand.NewPCG(uint64(run), 7))
	start := time.Now()
	for i := range n {
		id := r.IntN(2000)
		var err error
		switch k := r.IntN(20); {
		case k < 8:
			_, err = coll.InsertOne(ctx, mixedDoc(r, 10_000_000*(run+1)+i))
		case k < 14:
			_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: i}, {Key: "run", Value: run}}}})
		case k < 17:
			d := mixedDoc(r, id)
			_, err = coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, d[1:])
		default:
			_, err = coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
		}
		if err != nil {
			return 0, fmt.Errorf("mixed writes: %w", err)
		}
	}
	return time.Since(start), nil
}

// waitOplogArchived waits until the newest oplog entry is in the repository.
func waitOplogArchived(ctx context.Context, c *mongo.Client, repoDir string, id *age.X25519Identity) error {
	store, err := file.Open(repoDir)
	if err != nil {
		return err
	}
	repo, err := archive.Open(ctx, store, archive.Keys{Identities: []age.Identity{id}})
	if err != nil {
		return err
	}
	newest, _, err := oplog.Newest(ctx, c)
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		chain, err := repo.ReadStream(ctx, oplog.StreamName("rs0"))
		if err != nil {
			return err
		}
		if last, ok := chain.Last(); ok {
			if end, err := oplog.ParseTS(last.End); err == nil && !end.Less(newest) {
				time.Sleep(2 * time.Second) // late FerretDB entries: the tailer's overlap
				return nil
			}
		}
	}
	return fmt.Errorf("oplog up to %s not archived within 2 minutes", newest)
}

// idleCPU measures the CPU an idle source spends over d, without and then
// with `tidemark stream` attached (the streamer's own CPU beside it).
func idleCPU(bin, dir string, src *testenv.FerretDB, d time.Duration) error {
	before, err := procCPU(src.PID())
	if err != nil {
		return err
	}
	time.Sleep(d)
	after, _ := procCPU(src.PID())
	alone := after - before
	repo := filepath.Join(dir, "mongo-idle-repo")
	if out, err := exec.Command(bin, "init", "--repo", repo, "--no-encryption").CombinedOutput(); err != nil {
		return fmt.Errorf("init: %v %s", err, out)
	}
	stream := exec.Command(bin, "stream", "--repo", repo, "--source", src.URL(), "--log-level", "warn")
	stream.Stderr = os.Stderr
	if err := stream.Start(); err != nil {
		return err
	}
	time.Sleep(5 * time.Second) // connected and caught up
	before, _ = procCPU(src.PID())
	sBefore, _ := procCPU(stream.Process.Pid)
	time.Sleep(d)
	after, _ = procCPU(src.PID())
	sAfter, _ := procCPU(stream.Process.Pid)
	stream.Process.Signal(syscall.SIGTERM)
	stream.Wait()
	os.RemoveAll(repo)
	fmt.Printf("idle source CPU over %s: %.2fs alone (%.1f%% of a core), %.2fs with the streamer attached (%.1f%%); the streamer itself %.2fs\n",
		d, alone.Seconds(), 100*alone.Seconds()/d.Seconds(), (after - before).Seconds(), 100*(after-before).Seconds()/d.Seconds(), (sAfter - sBefore).Seconds())
	return nil
}

// procCPU is a process's user+system CPU time from /proc (clock ticks of
// 1/100 s, as on every Linux this runs on).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}
