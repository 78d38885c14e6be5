// Command demo is `make demo`: Tidemark's main job on an embedded default,
// printed step by step. Until the PostgreSQL engine lands it shows what
// exists for real: an encrypted repository created with the tidemark binary,
// a backup-like write of mixed data, deduplication of a second write, a
// verified restore, and corruption caught with a non-zero exit.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/tidemark/tidemark/archive"
)

const dataSize = 256 << 20

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "demo failed: %v\n", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func run(ctx context.Context) error {
	bin, err := filepath.Abs("bin/tidemark")
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s missing: run `make build` first", bin)
	}
	work, err := os.MkdirTemp("", "tidemark-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	repoDir := filepath.Join(work, "repo")

	step("generate an age key pair (the backup host gets only the public key)")
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	keyFile := filepath.Join(work, "restore.key")
	if err := os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Printf("public key %s\nidentity   %s (mode 0600, never in the repository)\n", id.Recipient(), keyFile)

	step("tidemark init --repo %s --recipient %s", repoDir, id.Recipient())
	if err := tidemark(bin, nil, "init", "--repo", repoDir, "--recipient", id.Recipient().String()); err != nil {
		return err
	}

	// The backup side opens the repository with no key at all.
	store, err := archive.OpenFile(repoDir)
	if err != nil {
		return err
	}
	writer, err := archive.Open(ctx, store, archive.Keys{})
	if err != nil {
		return err
	}

	step("back up %d MiB of mixed data (half random, half text) as a base backup, holding only the public key", dataSize>>20)
	data := mixedData(dataSize)
	first, err := backup(ctx, writer, data)
	if err != nil {
		return err
	}

	step("back up the same data again: deduplication stores almost nothing")
	second, err := backup(ctx, writer, data)
	if err != nil {
		return err
	}
	fmt.Printf("second backup added %.3f%% of the first one's bytes\n", 100*float64(second.NewStored)/float64(first.NewStored))

	step("restore the first backup with the identity file and compare")
	reader, err := archive.Open(ctx, store, archive.Keys{Identities: []age.Identity{id}})
	if err != nil {
		return err
	}
	ids, err := reader.ListManifests(ctx)
	if err != nil {
		return err
	}
	m, err := reader.ReadManifest(ctx, ids[0])
	if err != nil {
		return err
	}
	h := sha256.New()
	start := time.Now()
	if err := reader.RestoreFile(ctx, m.Files[0], h, 4); err != nil {
		return err
	}
	el := time.Since(start)
	want := sha256.Sum256(data)
	if !bytes.Equal(h.Sum(nil), want[:]) {
		return errors.New("restored bytes differ from the original")
	}
	fmt.Printf("restored %d MiB in %s (%.0f MiB/s): SHA-256 identical\n", dataSize>>20, el.Round(time.Millisecond), float64(dataSize>>20)/el.Seconds())

	step("a wrong key is refused with a clear error (exit 4)")
	other, _ := age.GenerateX25519Identity()
	otherFile := filepath.Join(work, "other.key")
	os.WriteFile(otherFile, []byte(other.String()+"\n"), 0o600)
	if err := expectExit(bin, 4, "verify", "--repo", repoDir, "--identity-file", otherFile); err != nil {
		return err
	}

	step("tidemark status --repo %s", repoDir)
	if err := tidemark(bin, nil, "status", "--repo", repoDir); err != nil {
		return err
	}

	step("tidemark verify --repo %s --identity-file %s", repoDir, keyFile)
	if err := tidemark(bin, nil, "verify", "--repo", repoDir, "--identity-file", keyFile); err != nil {
		return err
	}

	step("flip one byte in the middle of one stored chunk: verify names it and exits 3")
	victim, err := firstChunk(repoDir)
	if err != nil {
		return err
	}
	if err := flipByte(victim, 64<<10); err != nil {
		return err
	}
	if err := expectExit(bin, 3, "verify", "--repo", repoDir, "--identity-file", keyFile); err != nil {
		return err
	}

	fmt.Println("\nDemo complete: encrypted, deduplicated, verified — and corruption is never silent.")
	return nil
}

func backup(ctx context.Context, r *archive.Repository, data []byte) (archive.ChunkStats, error) {
	start := time.Now()
	w, err := r.NewChunkWriter(ctx, 4)
	if err != nil {
		return archive.ChunkStats{}, err
	}
	refs, err := w.WriteFile(ctx, bytes.NewReader(data), archive.ContentDefined)
	if err != nil {
		return archive.ChunkStats{}, err
	}
	if err := w.Commit(ctx); err != nil {
		return archive.ChunkStats{}, err
	}
	st := w.Stats()
	m := &archive.Manifest{ID: archive.NewManifestID(start), Engine: "demo", Type: "full", Started: start,
		Finished: time.Now(), Stats: st, Files: []archive.FileEntry{{Path: "data.bin", Size: int64(len(data)), Chunks: refs}}}
	if err := r.CommitManifest(ctx, m); err != nil {
		return st, err
	}
	el := time.Since(start)
	fmt.Printf("backup %s: %d MiB logical in %d chunks, %d new (%.1f MiB stored, ratio %.2f:1), %d deduplicated, %s (%.0f MiB/s)\n",
		m.ID, st.Logical>>20, st.Chunks, st.NewChunks, float64(st.NewStored)/(1<<20), ratio(st), st.DedupChunks,
		el.Round(time.Millisecond), float64(st.Logical>>20)/el.Seconds())
	return st, nil
}

func ratio(st archive.ChunkStats) float64 {
	if st.NewStored == 0 {
		return 0
	}
	return float64(st.NewPlain) / float64(st.NewStored)
}

func mixedData(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	words := strings.Fields("the quick brown fox jumps over the lazy dog while tidemark keeps every byte of history safe")
	for off := 0; off < n; off += 1 << 20 {
		// Every other MiB is text: a realistic mix of ~2:1 overall.
		if (off>>20)%2 == 1 {
			var t bytes.Buffer
			for i := 0; t.Len() < 1<<20; i++ {
				t.WriteString(words[(i*7+off)%len(words)])
				t.WriteByte(' ')
			}
			copy(b[off:min(off+1<<20, n)], t.Bytes())
		}
	}
	return b
}

func tidemark(bin string, stdin io.Reader, args ...string) error {
	cmd := exec.Command(bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("tidemark %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func expectExit(bin string, code int, args ...string) error {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != code {
		return fmt.Errorf("tidemark %s: want exit %d, got %v", strings.Join(args, " "), code, err)
	}
	fmt.Printf("(exit %d, as expected)\n", code)
	return nil
}

func firstChunk(repo string) (string, error) {
	var found string
	err := filepath.WalkDir(filepath.Join(repo, "chunks"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && found == "" {
			found = p
		}
		return err
	})
	if found == "" && err == nil {
		err = errors.New("no chunk found")
	}
	return found, err
}

func flipByte(path string, off int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		return err
	}
	b[0] ^= 0x40
	_, err = f.WriteAt(b, off)
	return err
}
