package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/tidemark/tidemark/archive"
)

// deltaFiles restores files over an existing directory, jobs files at a
// time, keeping the chunks already on disk.
func deltaFiles(ctx context.Context, cfg Config, files []archive.FileEntry, st *deltaStats, progress func(n int64)) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.Jobs)
	for _, f := range files {
		if gctx.Err() != nil {
			break // a file failed or ctx ended: start no more
		}
		g.Go(func() error {
			if err := deltaFile(gctx, cfg, f, filepath.Join(cfg.TargetDir, filepath.FromSlash(f.Path)), st); err != nil {
				return err
			}
			progress(f.Size)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return context.Cause(ctx) // ended before every file was started
}

// deltaStats counts what a --delta restore kept and fetched.
type deltaStats struct {
	kept, fetched atomic.Int64 // bytes
}

// checkDeltaTarget refuses a directory a running server uses.
func checkDeltaTarget(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); err == nil {
		return fmt.Errorf("%s holds postmaster.pid: stop the server before a delta restore (or remove a stale pid file)", dir)
	}
	return nil
}

// deltaFile brings an existing file to f's content chunk by chunk: chunks
// whose bytes on disk already hash to the chunk's id are kept, the others
// fetched. Files are cut at the same offsets they were backed up with, so
// a relation file with a few changed pages fetches only those chunks.
func deltaFile(ctx context.Context, cfg Config, f archive.FileEntry, p string, st *deltaStats) error {
	out, err := os.OpenFile(p, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return writeFiles(ctx, cfg.Repo, cfg.TargetDir, []archive.FileEntry{f}, 2, func(n int64) { st.fetched.Add(n) })
	}
	if err != nil {
		return err
	}
	defer out.Close()
	var off int64
	buf := make([]byte, 0, archive.AlignedChunkSize)
	for _, ref := range f.Chunks {
		if cap(buf) < int(ref.Size) {
			buf = make([]byte, 0, ref.Size)
		}
		b := buf[:ref.Size]
		n, err := out.ReadAt(b, off)
		if err != nil && err != io.EOF {
			return err
		}
		if n == len(b) && cfg.Repo.ChunkMatches(b, ref) {
			st.kept.Add(int64(n))
		} else {
			data, err := cfg.Repo.ReadChunk(ctx, ref)
			if err != nil {
				return fmt.Errorf("restore %s: %w", f.Path, err)
			}
			if _, err := out.WriteAt(data, off); err != nil {
				return err
			}
			st.fetched.Add(int64(len(data)))
		}
		off += int64(ref.Size)
	}
	if err := out.Truncate(f.Size); err != nil {
		return err
	}
	if err := out.Chmod(fs.FileMode(f.Mode).Perm() | 0o600); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return os.Chtimes(p, f.ModTime, f.ModTime)
}

// removeExtra deletes what the backup does not hold (old WAL, files of
// dropped relations, a previous recovery's leftovers), so the directory is
// exactly the backup.
func removeExtra(dir string, m *archive.Manifest) error {
	keep := map[string]bool{}
	for _, f := range m.Files {
		keep[f.Path] = true
		for d := filepath.Dir(f.Path); d != "." && d != "/"; d = filepath.Dir(d) {
			keep[d] = true
		}
	}
	var extra []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if strings.HasPrefix(rel, "pg_tblspc/") && strings.Count(rel, "/") == 1 {
			return filepath.SkipDir // tablespace links are placed separately
		}
		if !keep[rel] {
			extra = append(extra, p)
			if e.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range extra {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}
