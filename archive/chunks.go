package archive

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/restic/chunker"
)

// ChunkID names a chunk: HMAC-SHA256 of its plaintext under the repository's
// chunk id key.
type ChunkID [32]byte

func (id ChunkID) String() string { return hex.EncodeToString(id[:]) }

// ParseChunkID parses the hex form of a chunk id.
func ParseChunkID(s string) (ChunkID, error) {
	var id ChunkID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("bad chunk id %q", s)
	}
	copy(id[:], b)
	return id, nil
}

// MarshalText makes chunk ids hex in JSON manifests.
func (id ChunkID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses hex chunk ids.
func (id *ChunkID) UnmarshalText(b []byte) error {
	v, err := ParseChunkID(string(b))
	*id = v
	return err
}

// chunkName fans chunks out over 256 directories so no directory of a file
// store grows unmanageably large.
func chunkName(id ChunkID) string {
	h := id.String()
	return "chunks/" + h[:2] + "/" + h
}

// ChunkRef is one chunk of a file, as recorded in manifests.
type ChunkRef struct {
	ID   ChunkID `json:"id"`
	Size uint32  `json:"size"` // plaintext bytes
}

func (r *Repository) chunkID(data []byte) ChunkID {
	m := hmac.New(sha256.New, r.cfg.chunkIDKey())
	m.Write(data)
	var id ChunkID
	copy(id[:], m.Sum(nil))
	return id
}

// ChunkMode selects how a file is cut into chunks.
type ChunkMode int

const (
	// Aligned cuts at fixed offsets: right for files whose blocks never
	// shift, such as PostgreSQL relation files, where a changed page
	// changes exactly one chunk.
	Aligned ChunkMode = iota
	// ContentDefined cuts where a rolling hash says, so an insertion only
	// changes the chunks around it: right for streams whose bytes shift.
	ContentDefined
)

// AlignedChunkSize is the chunk size of Aligned mode.
const AlignedChunkSize = 1 << 20

// ChunkStats counts what a ChunkWriter did.
type ChunkStats struct {
	Logical     int64 // plaintext bytes passed in
	Chunks      int64 // chunk references produced
	NewChunks   int64 // chunks stored by this writer
	NewPlain    int64 // plaintext bytes of new chunks
	NewStored   int64 // bytes those new chunks take in the store
	DedupChunks int64 // chunks the repository already had
}

// ChunkWriter stores files as deduplicated chunks with parallel workers and
// records what it stored in a chunk index on Commit.
type ChunkWriter struct {
	repo *Repository
	jobs int

	mu       sync.Mutex
	known    map[ChunkID]struct{} // in the repository or being stored now
	added    []indexEntry
	stats    ChunkStats
	inflight chan struct{} // bounds buffered chunks: memory stays ~ jobs × chunk size
	bufs     [24]sync.Pool // by size class, see buffer
}

// NewChunkWriter loads the chunk index and returns a writer with jobs workers.
func (r *Repository) NewChunkWriter(ctx context.Context, jobs int) (*ChunkWriter, error) {
	if jobs < 1 {
		jobs = 1
	}
	known, err := r.loadChunkIndex(ctx)
	if err != nil {
		return nil, err
	}
	return &ChunkWriter{repo: r, jobs: jobs, known: known, inflight: make(chan struct{}, 2*jobs)}, nil
}

// Stats returns the counts so far.
func (w *ChunkWriter) Stats() ChunkStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// WriteFile cuts src into chunks, stores the ones the repository lacks, and
// returns the file's chunk references in order.
func (w *ChunkWriter) WriteFile(ctx context.Context, src io.Reader, mode ChunkMode) ([]ChunkRef, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		refs []ChunkRef
		wg   sync.WaitGroup
	)
	next := w.splitter(src, mode)
	for {
		buf, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			cancel(err)
			wg.Wait()
			return nil, fmt.Errorf("read file data: %w", err)
		}
		id := w.repo.chunkID(buf)
		refs = append(refs, ChunkRef{ID: id, Size: uint32(len(buf))})
		if !w.claim(id, len(buf)) {
			w.release(buf)
			continue
		}
		select {
		case w.inflight <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(id ChunkID, buf []byte) {
			defer wg.Done()
			defer func() { <-w.inflight }()
			defer w.release(buf)
			if err := w.store(ctx, id, buf); err != nil {
				cancel(err)
			}
		}(id, buf)
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return refs, nil
}

// claim records id as known; it reports whether the caller must store it.
func (w *ChunkWriter) claim(id ChunkID, size int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.Logical += int64(size)
	w.stats.Chunks++
	if _, ok := w.known[id]; ok {
		w.stats.DedupChunks++
		return false
	}
	w.known[id] = struct{}{}
	return true
}

func (w *ChunkWriter) store(ctx context.Context, id ChunkID, data []byte) error {
	st, err := putWith(ctx, w.repo.store, w.repo.chunks, chunkName(id), KindChunk, bytes.NewReader(data))
	if errors.Is(err, ErrExist) {
		// Stored by an earlier session that died before writing its index.
		// Same name means same content (the name is a keyed hash of it).
		st, err = PutStat{Plain: int64(len(data))}, nil
		if info, serr := w.repo.store.Stat(ctx, chunkName(id)); serr == nil {
			st.Stored = info.Size
		}
	}
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.added = append(w.added, indexEntry{id: id, plain: uint32(len(data)), stored: uint32(st.Stored)})
	w.stats.NewChunks++
	w.stats.NewPlain += st.Plain
	w.stats.NewStored += st.Stored
	return nil
}

// buffer returns a pooled buffer of n bytes. Buffers are pooled by
// power-of-two class so a 1 MiB chunk never pins an 8 MiB buffer.
func (w *ChunkWriter) buffer(n int) []byte {
	c := sizeClass(n)
	if b, ok := w.bufs[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<c)
}

func (w *ChunkWriter) release(b []byte) {
	c := sizeClass(cap(b))
	if 1<<c != cap(b) {
		return // not one of ours
	}
	w.bufs[c].Put(&b)
}

// sizeClass is the smallest c with 1<<c >= n (n ≤ chunker.MaxSize).
func sizeClass(n int) int {
	c := 0
	for 1<<c < n {
		c++
	}
	return c
}

// splitter returns a function yielding successive chunks of src, each in a
// buffer of its own (released by the consumer).
func (w *ChunkWriter) splitter(src io.Reader, mode ChunkMode) func() ([]byte, error) {
	if mode == Aligned {
		return func() ([]byte, error) {
			buf := w.buffer(AlignedChunkSize)
			n, err := io.ReadFull(src, buf)
			if n > 0 && (err == nil || err == io.ErrUnexpectedEOF || err == io.EOF) {
				return buf[:n], nil
			}
			w.release(buf)
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			return nil, err
		}
	}
	c := chunker.New(src, chunker.Pol(w.repo.cfg.ChunkerPolynomial))
	scratch := make([]byte, chunker.MaxSize) // one per file: chunks are copied out
	return func() ([]byte, error) {
		ch, err := c.Next(scratch)
		if err != nil {
			return nil, err
		}
		buf := w.buffer(len(ch.Data))
		copy(buf, ch.Data)
		return buf, nil
	}
}

// Commit writes the index of the chunks this writer stored. Call it before
// writing the manifest that references them; a writer with nothing new
// writes nothing.
func (w *ChunkWriter) Commit(ctx context.Context) error {
	w.mu.Lock()
	added := w.added
	w.added = nil
	w.mu.Unlock()
	if len(added) == 0 {
		return nil
	}
	return w.repo.writeChunkIndex(ctx, added)
}

// ReadChunks writes the plaintext of refs, in order, to dst, fetching up to
// jobs chunks ahead in parallel. Each chunk is verified: its object checksum
// and that its content hashes to its id.
func (r *Repository) ReadChunks(ctx context.Context, refs []ChunkRef, dst io.Writer, jobs int) error {
	if jobs < 1 {
		jobs = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		data []byte
		err  error
	}
	pending := make(chan chan result, jobs)
	go func() {
		defer close(pending)
		for _, ref := range refs {
			ch := make(chan result, 1)
			select {
			case pending <- ch:
			case <-ctx.Done():
				return
			}
			go func(ref ChunkRef) {
				data, err := r.readChunk(ctx, ref)
				ch <- result{data, err}
			}(ref)
		}
	}()
	for ch := range pending {
		res := <-ch
		if res.err != nil {
			return res.err
		}
		if _, err := dst.Write(res.data); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (r *Repository) readChunk(ctx context.Context, ref ChunkRef) ([]byte, error) {
	name := chunkName(ref.ID)
	rc, err := getWith(ctx, r.store, r.chunks, name, KindChunk)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data := make([]byte, 0, ref.Size)
	buf := bytes.NewBuffer(data)
	if _, err := io.Copy(buf, io.LimitReader(rc, int64(ref.Size)+1)); err != nil {
		return nil, err
	}
	data = buf.Bytes()
	if len(data) != int(ref.Size) {
		return nil, fmt.Errorf("chunk %s: %w: %d bytes, manifest says %d", name, ErrCorrupt, len(data), ref.Size)
	}
	if r.chunkID(data) != ref.ID {
		return nil, fmt.Errorf("chunk %s: %w: content does not match its id", name, ErrCorrupt)
	}
	return data, nil
}

// ChunkMatches reports whether data is exactly the chunk ref names, so a
// delta restore can keep bytes already on disk.
func (r *Repository) ChunkMatches(data []byte, ref ChunkRef) bool {
	return len(data) == int(ref.Size) && r.chunkID(data) == ref.ID
}

// ReadChunk fetches and verifies one chunk.
func (r *Repository) ReadChunk(ctx context.Context, ref ChunkRef) ([]byte, error) {
	return r.readChunk(ctx, ref)
}
