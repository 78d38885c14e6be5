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
// rate of restore --latest. There is no mongodump on these machines to
// pair with, so only tidemark's own numbers are printed.
func mongoSuite(ctx context.Context, dir string, docs, runs int) error {
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
		stream.Process.Signal(syscall.SIGTERM)
		stream.Wait()
		if err != nil {
			return err
		}
		lags = append(lags, l...)
		fmt.Printf("run %d: backup %s, write load done\n", run, s.wall.Round(time.Millisecond))
		target, err := testenv.StartFerretDB()
		if err != nil {
			return err
		}
		s, out, err = measureTidemark(bin, "restore", "--repo", repo, "--identity-file", keyFile, "--target", target.URL(), "--latest")
		target.Destroy()
		if err != nil {
			return err
		}
		restores = append(restores, s)
		if m := regexp.MustCompile(`, (\d+) documents\) and replayed (\d+) oplog`).FindSubmatch(out); m != nil {
			restoredDocs, _ = strconv.Atoi(string(m[1]))
			replayed, _ = strconv.Atoi(string(m[2]))
		}
	}
	b, r := median(backups), median(restores)
	fmt.Printf("\n%-16s %10s %12s %10s %12s\n", "step", "median", "documents/s", "MiB/s", "peak RSS")
	fmt.Printf("%-16s %10s %12.0f %10.1f %9.0f MiB\n", "backup", b.wall.Round(time.Millisecond), float64(docs)/b.wall.Seconds(), mib(logical)/b.wall.Seconds(), mib(b.maxRSS))
	fmt.Printf("%-16s %10s %12.0f %10.1f %9.0f MiB   (load %d documents + replay %d ops)\n", "restore --latest", r.wall.Round(time.Millisecond),
		float64(restoredDocs)/r.wall.Seconds(), mib(logical)/r.wall.Seconds(), mib(r.maxRSS), restoredDocs, replayed)
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
