package postgres

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/tidemark/tidemark/archive"
)

// writeFiles restores regular files into dir with jobs workers that share
// out chunks, not files: one 1 GiB relation file is fetched, verified and
// written by every worker at once, each chunk at its offset. A file is
// fsynced and given its mtime once its last chunk is written. progress,
// when set, is called with the bytes written by each chunk, from the
// workers concurrently.
func writeFiles(ctx context.Context, repo *archive.Repository, dir string, files []archive.FileEntry, jobs int, progress func(n int64)) error {
	type job struct {
		f   *outFile
		off int64
		ref archive.ChunkRef
	}
	g, ctx := errgroup.WithContext(ctx)
	work := make(chan job, 2*jobs)
	bufs := sync.Pool{New: func() any { b := alignedBuffer(archive.AlignedChunkSize + 1); return &b }}
	for range jobs {
		g.Go(func() error {
			for j := range work {
				if ctx.Err() != nil {
					return context.Cause(ctx) // leave the queued chunks after a failure
				}
				buf := bufs.Get().(*[]byte)
				data, err := repo.ReadChunkInto(ctx, j.ref, *buf)
				if err == nil {
					err = j.f.writeAt(data, j.off)
				}
				bufs.Put(buf) // the aligned one, even if a big chunk needed another
				if err != nil {
					return fmt.Errorf("restore %s: %w", j.f.entry.Path, err)
				}
				if progress != nil {
					progress(int64(len(data)))
				}
				if err := j.f.chunkDone(); err != nil {
					return err
				}
			}
			return nil
		})
	}
	var opened []*outFile // read after Wait
	g.Go(func() error {
		defer close(work)
		for _, f := range files {
			of, err := createFile(dir, f)
			if err != nil {
				return err
			}
			opened = append(opened, of)
			if len(f.Chunks) == 0 {
				if err := of.finish(); err != nil {
					return err
				}
				continue
			}
			var off int64
			for _, ref := range f.Chunks {
				select {
				case work <- job{of, off, ref}:
				case <-ctx.Done():
					return context.Cause(ctx)
				}
				off += int64(ref.Size)
			}
		}
		return nil
	})
	err := g.Wait()
	for _, of := range opened {
		of.close() // files a failure left unfinished
	}
	return err
}

// outFile is one file being restored.
type outFile struct {
	entry archive.FileEntry
	path  string
	file  *os.File
	left  atomic.Int64 // chunks not yet written
	// direct: written with O_DIRECT, past the page cache (big files whose
	// chunks are all whole blocks).
	direct bool
	mu     sync.Mutex
	done   bool
}

func createFile(dir string, f archive.FileEntry) (*outFile, error) {
	p := filepath.Join(dir, filepath.FromSlash(f.Path))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, err
	}
	file, direct, err := openOut(p, fs.FileMode(f.Mode).Perm()|0o600, directIO(f))
	if err != nil {
		return nil, err
	}
	of := &outFile{entry: f, path: p, file: file, direct: direct}
	of.left.Store(int64(len(f.Chunks)))
	return of, nil
}

func (of *outFile) writeAt(data []byte, off int64) error {
	if of.direct && !aligned(data) {
		b := alignedBuffer(len(data)) // a chunk bigger than the pooled buffers
		copy(b, data)
		data = b
	}
	if _, err := of.file.WriteAt(data, off); err != nil {
		return err
	}
	if !of.direct {
		startWriteback(of.file, off, int64(len(data)))
	}
	return nil
}

// chunkDone counts a written chunk and finishes the file after its last.
func (of *outFile) chunkDone() error {
	if of.left.Add(-1) > 0 {
		return nil
	}
	return of.finish()
}

// finish makes the file durable and gives it its recorded mtime.
func (of *outFile) finish() error {
	of.mu.Lock()
	defer of.mu.Unlock()
	of.done = true
	err := of.file.Sync()
	if cerr := of.file.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chtimes(of.path, of.entry.ModTime, of.entry.ModTime)
	}
	if err != nil {
		return fmt.Errorf("restore %s: %w", of.entry.Path, err)
	}
	return nil
}

func (of *outFile) close() {
	of.mu.Lock()
	defer of.mu.Unlock()
	if !of.done {
		of.done = true
		of.file.Close()
	}
}
