package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"filippo.io/age"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/all"
	"github.com/tidemark/tidemark/internal/testenv/storeenv"
)

// repoSuite: backup / second backup / restore of size bytes, on file:// and
// s3://, interleaved with the zstd|age anchor on file://.
func repoSuite(ctx context.Context, dir string, size int64, runs int) error {
	input := filepath.Join(dir, "input")
	sum, err := writeInput(input, size)
	if err != nil {
		return err
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600); err != nil {
		return err
	}
	minio, err := storeenv.StartMinIO()
	if err != nil {
		return fmt.Errorf("start MinIO (run `make deps`): %w", err)
	}
	defer minio.Stop()
	bucket, err := minio.CreateBucket(ctx)
	if err != nil {
		return err
	}
	s3env := minio.Env()
	fmt.Printf("repo suite: %.0f MiB of mixed data (random + text), age encryption, zstd level 1, %d runs, A B A B order\n", mib(size), runs)

	results := map[string][]sample{}
	var dedupPct []float64
	for run := 0; run < runs; run++ {
		for _, target := range []string{"file", "s3"} {
			url := "file://" + filepath.Join(dir, fmt.Sprintf("repo-%d", run))
			env := []string{"BENCH_IDENTITY_FILE=" + keyFile}
			if target == "s3" {
				url = fmt.Sprintf("s3://%s/run-%d", bucket, run)
				env = append(env, s3env...)
			}
			if err := initRepo(ctx, url, s3env, id); err != nil {
				return err
			}
			s, res, err := runMeasured(env, "backup", url, input)
			if err != nil {
				return err
			}
			results[target+" backup"] = append(results[target+" backup"], s)
			s, res2, err := runMeasured(env, "backup", url, input)
			if err != nil {
				return err
			}
			results[target+" second backup"] = append(results[target+" second backup"], s)
			dedupPct = append(dedupPct, 100*float64(res2.NewStored)/float64(res.NewStored))
			s, res3, err := runMeasured(env, "restore", url)
			if err != nil {
				return err
			}
			if res3.SHA256 != sum || res3.Logical != size {
				return fmt.Errorf("%s restore: %d bytes sha256 %s, want %d bytes %s", target, res3.Logical, res3.SHA256, size, sum)
			}
			results[target+" restore"] = append(results[target+" restore"], s)
			if target == "file" {
				results["file stored"] = append(results["file stored"], sample{note: strconv.FormatInt(res.NewStored, 10)})
			}
		}
		// B: the anchor pipeline on the same input, right after A.
		out := filepath.Join(dir, fmt.Sprintf("anchor-%d.zst.age", run))
		pub := id.Recipient().String()
		s, _, err := measureCmd(exec.Command("bash", "-c", fmt.Sprintf("zstd -q -1 -T0 -c %q | age -r %s -o %q", input, pub, out)), nil)
		if err != nil {
			return err
		}
		results["anchor backup"] = append(results["anchor backup"], s)
		s, res, err := measureCmd(exec.Command("bash", "-c", fmt.Sprintf("age -d -i %q %q | zstd -q -d -c | sha256sum | cut -d' ' -f1 | tr -d '\\n'", keyFile, out)), nil)
		if err != nil {
			return err
		}
		if res.SHA256 != sum {
			return fmt.Errorf("anchor restore differs: %s", res.SHA256)
		}
		results["anchor restore"] = append(results["anchor restore"], s)
		os.Remove(out)
	}
	report(size, results, dedupPct)
	return nil
}

func initRepo(ctx context.Context, url string, s3env []string, id *age.X25519Identity) error {
	for _, kv := range s3env {
		k, v, _ := cut(kv)
		os.Setenv(k, v)
	}
	store, err := all.Open(ctx, url)
	if err != nil {
		return err
	}
	_, err = archive.Init(ctx, store, archive.InitOptions{Recipients: []string{id.Recipient().String()}})
	return err
}

func cut(kv string) (string, string, bool) {
	for i := range kv {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}

func report(size int64, r map[string][]sample, dedupPct []float64) {
	fmt.Printf("\n%-22s %10s %10s %12s\n", "step", "median", "MiB/s", "peak RSS")
	for _, k := range []string{"file backup", "anchor backup", "file restore", "anchor restore", "file second backup", "s3 backup", "s3 restore", "s3 second backup"} {
		if len(r[k]) == 0 {
			continue
		}
		m := median(r[k])
		fmt.Printf("%-22s %9.2fs %10.0f %9.1f MiB\n", k, m.wall.Seconds(), mib(size)/m.wall.Seconds(), mib(m.maxRSS))
	}
	ratio := func(a, b string) {
		fmt.Printf("ratio %-16s tidemark/anchor time %.2f  (>1 means tidemark is slower)\n", a, median(r["file "+a]).wall.Seconds()/median(r["anchor "+b]).wall.Seconds())
	}
	fmt.Println()
	ratio("backup", "backup")
	ratio("restore", "restore")
	if st := r["file stored"]; len(st) > 0 {
		n, _ := strconv.ParseInt(st[0].note, 10, 64)
		fmt.Printf("compression: %.0f MiB stored for %.0f MiB (%.2f:1, including encryption overhead)\n", mib(n), mib(size), float64(size)/float64(n))
	}
	worst := 0.0
	for _, p := range dedupPct {
		worst = max(worst, p)
	}
	verdict := "OK"
	if worst >= 1 {
		verdict = "FAIL (target < 1%)"
	}
	fmt.Printf("second backup of the same data added at most %.4f%% new bytes: %s\n", worst, verdict)
}

// objectSuite streams one object of growing size through the repository and
// reports peak RSS at each size.
func objectSuite(ctx context.Context, dir string, largest int64) error {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	keyFile := filepath.Join(dir, "object-key")
	if err := os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Printf("\nobject suite: one object streamed through an encrypted file:// repository (target: peak RSS ≤ 64 MiB at any size)\n")
	fmt.Printf("%-10s %10s %10s %12s %10s %12s\n", "size", "put", "MiB/s", "put RSS", "get", "get RSS")
	for _, size := range []int64{largest / 16, largest / 4, largest} {
		url := "file://" + filepath.Join(dir, "object-"+strconv.FormatInt(size, 10))
		if err := initRepo(ctx, url, nil, id); err != nil {
			return err
		}
		env := []string{"BENCH_IDENTITY_FILE=" + keyFile}
		put, pres, err := runMeasuredFed(env, size, "object-put", url)
		if err != nil {
			return err
		}
		get, gres, err := runMeasured(env, "object-get", url)
		if err != nil {
			return err
		}
		if gres.SHA256 != pres.SHA256 || gres.Logical != size {
			return fmt.Errorf("object of %d bytes read back as %d bytes, sha256 %s want %s", size, gres.Logical, gres.SHA256, pres.SHA256)
		}
		fmt.Printf("%7.0f MiB %9.1fs %10.0f %8.1f MiB %9.1fs %8.1f MiB\n", mib(size), put.wall.Seconds(), mib(size)/put.wall.Seconds(),
			mib(put.maxRSS), get.wall.Seconds(), mib(get.maxRSS))
		os.RemoveAll(filepath.Join(dir, "object-"+strconv.FormatInt(size, 10)))
	}
	return nil
}

func writeInput(path string, size int64) (string, error) {
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(newMixedReader(7), size)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), f.Close()
}
