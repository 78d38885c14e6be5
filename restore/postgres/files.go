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
	plans := make([]outPlan, len(files))
	for i, f := range files {
		plans[i] = outPlan{entry: f}
	}
	return writePlans(ctx, repo, dir, plans, jobs, progress)
}

// outPlan is one file to write: its entry's chunks, or (a file rebuilt
// from an incremental chain) pieces of chunks of several backups' files
// over a file of entry.Size whose other bytes stay zero.
type outPlan struct {
	entry  archive.FileEntry
	pieces []piece
}

// piece is n bytes from offset from of a chunk, written at off.
type piece struct {
	ref     archive.ChunkRef
	from, n int64
	off     int64
}

func (p outPlan) work() []piece {
	if p.pieces != nil {
		return p.pieces
	}
	out := make([]piece, len(p.entry.Chunks))
	var off int64
	for i, ref := range p.entry.Chunks {
		out[i] = piece{ref: ref, n: int64(ref.Size), off: off}
		off += int64(ref.Size)
	}
	return out
}

// writePlans is writeFiles for plans.
func writePlans(ctx context.Context, repo *archive.Repository, dir string, files []outPlan, jobs int, progress func(n int64)) error {
	type job struct {
		f *outFile
		piece
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
				if err == nil && (j.from+j.n > int64(len(data))) {
					err = fmt.Errorf("chunk %s holds %d bytes, not the %d from %d: %w", j.ref.ID, len(data), j.n, j.from, archive.ErrCorrupt)
				}
				if err == nil {
					data = data[j.from : j.from+j.n]
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
		for _, p := range files {
			pieces := p.work()
			// Rebuilt files go through the page cache: their pieces need not be whole direct-I/O blocks.
			of, err := createFile(dir, p.entry, len(pieces), p.pieces == nil && directIO(p.entry))
			if err != nil {
				return err
			}
			opened = append(opened, of)
			if p.pieces != nil {
				// Blocks no backup holds are zeros: leave them as holes.
				if err := of.file.Truncate(p.entry.Size); err != nil {
					return fmt.Errorf("restore %s: %w", p.entry.Path, err)
				}
			}
			if len(pieces) == 0 {
				if err := of.finish(); err != nil {
					return err
				}
				continue
			}
			for _, pc := range pieces {
				select {
				case work <- job{of, pc}:
				case <-ctx.Done():
					return context.Cause(ctx)
				}
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

func createFile(dir string, f archive.FileEntry, pieces int, direct bool) (*outFile, error) {
	p := filepath.Join(dir, filepath.FromSlash(f.Path))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, err
	}
	file, direct, err := openOut(p, fs.FileMode(f.Mode).Perm()|0o600, direct)
	if err != nil {
		return nil, err
	}
	of := &outFile{entry: f, path: p, file: file, direct: direct}
	of.left.Store(int64(pieces))
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
