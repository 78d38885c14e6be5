package archive

import (
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

// chunkID names data. Format 2 keys the HMAC with the SHA-256 of the
// content rather than the content itself: the object's own checksum is that
// same SHA-256, so each chunk is hashed once when written and once when read.
func (r *Repository) chunkID(data []byte) ChunkID {
	if r.cfg.Version == 1 {
		m := hmac.New(sha256.New, r.cfg.chunkIDKey())
		m.Write(data)
		var id ChunkID
		copy(id[:], m.Sum(nil))
		return id
	}
	return r.chunkIDOfSum(sha256.Sum256(data))
}

func (r *Repository) chunkIDOfSum(sum [32]byte) ChunkID {
	m := hmac.New(sha256.New, r.cfg.chunkIDKey())
	m.Write(sum[:])
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

// CompressionRatio is NewPlain per NewStored byte: what compression
// achieved on the chunks this writer added, envelope and encryption
// overhead included (below 1 for incompressible data); 0 when it added
// none. Deduplication is not in it: Logical against NewStored shows that.
func (s ChunkStats) CompressionRatio() float64 { return ratio(s.NewPlain, s.NewStored) }

func ratio(plain, stored int64) float64 {
	if plain == 0 || stored == 0 {
		return 0
	}
	return float64(plain) / float64(stored)
}

// ChunkWriter stores files as deduplicated chunks with parallel workers,
// gathered into packs, and records what it stored in a chunk index on
// Commit.
type ChunkWriter struct {
	repo *Repository
	jobs int
	// packCtx outlives WriteFile calls: packs span files. Abort cancels it.
	packCtx    context.Context
	cancelPack context.CancelFunc

	mu       sync.Mutex
	known    map[ChunkID]indexEntry // in the repository or being stored now
	added    []indexEntry
	stats    ChunkStats
	open     int              // packs started and not yet full
	closeErr error            // the first pack that failed to close
	closing  sync.WaitGroup   // packs being closed in the background
	closeSem chan struct{}    // bounds packs closing at once (their buffers)
	inflight chan struct{}    // bounds chunks in work: memory stays ~ jobs × chunk size
	idle     chan *packWriter // open packs no worker is writing to
	spare    chan *packWriter // closed packs whose buffers a new pack reuses
	bufs     [24]sync.Pool    // by size class, see buffer
}

// NewChunkWriter loads the chunk index and returns a writer with jobs workers.
func (r *Repository) NewChunkWriter(ctx context.Context, jobs int) (*ChunkWriter, error) {
	if r.cfg.Version == 1 {
		return nil, fmt.Errorf("repository %s is format version 1, which this build reads but no longer adds backups to: initialise a new repository for new backups", r.store.Location())
	}
	if jobs < 1 {
		jobs = 1
	}
	known, err := r.loadChunkIndex(ctx)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	return &ChunkWriter{repo: r, jobs: jobs, known: known, packCtx: pctx, cancelPack: cancel,
		inflight: make(chan struct{}, 2*jobs), idle: make(chan *packWriter, jobs), spare: make(chan *packWriter, jobs),
		closeSem: make(chan struct{}, jobs)}, nil
}

// Stats returns the counts so far.
func (w *ChunkWriter) Stats() ChunkStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// WriteFile cuts src into chunks, stores the ones the repository lacks, and
// returns the file's chunk references in order. Hashing, compression and
// encryption run on up to 2×jobs chunks at once; reading src is the only
// serial part.
func (w *ChunkWriter) WriteFile(ctx context.Context, src io.Reader, mode ChunkMode) ([]ChunkRef, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		refs []*ChunkRef
		wg   sync.WaitGroup
	)
	next := w.splitter(src, mode)
read:
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
		select {
		case w.inflight <- struct{}{}:
		case <-ctx.Done():
			w.release(buf)
			break read
		}
		ref := &ChunkRef{Size: uint32(len(buf))}
		refs = append(refs, ref)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-w.inflight }()
			defer w.release(buf)
			if err := w.chunk(ctx, ref, buf); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	out := make([]ChunkRef, len(refs))
	for i, r := range refs {
		out[i] = *r
	}
	return out, nil
}

// chunk names one chunk and, when the repository lacks it, seals it and
// adds it to a pack.
func (w *ChunkWriter) chunk(ctx context.Context, ref *ChunkRef, data []byte) error {
	sum := sha256.Sum256(data)
	ref.ID = w.repo.chunkIDOfSum(sum)
	if !w.claim(ref.ID, len(data)) {
		return nil
	}
	stored, err := w.addToPack(ctx, ref.ID, data, sum)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.NewChunks++
	w.stats.NewPlain += int64(len(data))
	w.stats.NewStored += stored
	return nil
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
	w.known[id] = indexEntry{id: id}
	return true
}

// addToPack seals a chunk into an open pack: an idle one, a new one while
// fewer than jobs are open, or else the next to become idle. Sealing
// (compression, encryption) happens while the pack is held, so at most jobs
// chunks are compressed at once, each straight into its pack. A pack that
// reached its target size is closed here, and its chunks become indexable
// once the store holds it. It returns the chunk object's stored size.
func (w *ChunkWriter) addToPack(ctx context.Context, id ChunkID, data []byte, sum [32]byte) (int64, error) {
	w.mu.Lock()
	err := w.closeErr
	w.mu.Unlock()
	if err != nil {
		return 0, err
	}
	var p *packWriter
	select {
	case p = <-w.idle:
	default:
		w.mu.Lock()
		start := w.open < w.jobs
		if start {
			w.open++
		}
		w.mu.Unlock()
		if start {
			var spare *packWriter
			select {
			case spare = <-w.spare:
			default:
			}
			if p, err = w.repo.newPackWriter(w.packCtx, spare); err != nil {
				w.packGone()
				return 0, err
			}
		} else {
			select {
			case p = <-w.idle:
			case <-ctx.Done():
				return 0, context.Cause(ctx)
			}
		}
	}
	stored, err := p.seal(w.repo.chunks, id, data, sum)
	if err != nil {
		p.abort(err)
		w.packGone()
		return 0, err
	}
	if p.size < packTarget {
		w.idle <- p
		return stored, nil
	}
	w.closeInBackground(p)
	return stored, nil
}

// packGone accounts for a pack that no longer takes chunks.
func (w *ChunkWriter) packGone() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.open--
}

// closeInBackground finishes a full pack while the workers go on: the
// store's fsync or last PUT must not stall compression. Its chunks become
// indexable once the store holds it; a failure fails the writer (the next
// chunk and Commit return it).
func (w *ChunkWriter) closeInBackground(p *packWriter) {
	w.closeSem <- struct{}{}
	w.packGone() // a new pack may start now
	w.closing.Add(1)
	go func() {
		defer w.closing.Done()
		defer func() { <-w.closeSem }()
		err := p.close()
		w.mu.Lock()
		if err != nil && w.closeErr == nil {
			w.closeErr = err
		}
		if err == nil {
			for _, e := range p.entries {
				w.added = append(w.added, indexEntry{id: e.id, pack: p.id, off: e.off, length: e.length, plain: e.plain, stored: e.length})
			}
		}
		w.mu.Unlock()
		if err == nil {
			select {
			case w.spare <- p: // its buffers serve a next pack
			default:
			}
		}
	}()
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

// Commit closes the open packs and writes the index of the chunks this
// writer stored. Call it, after every WriteFile returned, before writing the
// manifest that references them; a writer with nothing new writes nothing.
func (w *ChunkWriter) Commit(ctx context.Context) error {
	for done := false; !done; {
		select {
		case p := <-w.idle:
			w.closeInBackground(p)
		default:
			done = true
		}
	}
	w.closing.Wait()
	w.mu.Lock()
	added, err := w.added, w.closeErr
	w.added = nil
	w.mu.Unlock()
	if err != nil {
		return err
	}
	if len(added) == 0 {
		return nil
	}
	return w.repo.writeChunkIndex(ctx, added)
}

// Abort abandons the packs still open (after a failure): the store keeps
// nothing of them (a pack already closing may land; expire removes it as
// unindexed). A no-op after Commit.
func (w *ChunkWriter) Abort() {
	defer w.closing.Wait()
	defer w.cancelPack()
	for {
		select {
		case p := <-w.idle:
			p.abort(errors.New("backup abandoned"))
			w.packGone()
		default:
			return
		}
	}
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
	return r.ReadChunkInto(ctx, ref, nil)
}

// ReadChunkInto fetches and verifies one chunk into buf (reallocated when
// too small) and returns the chunk's bytes. The object's checksum, its
// authentication when encrypted, its size and that its content hashes to
// its id are all checked.
func (r *Repository) ReadChunkInto(ctx context.Context, ref ChunkRef, buf []byte) ([]byte, error) {
	where, rc, err := r.openChunk(ctx, ref.ID)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	or, err := r.chunks.NewReader(rc, KindChunk)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	defer or.Close()
	want := int(ref.Size)
	if cap(buf) < want+1 {
		buf = make([]byte, want+1)
	}
	buf = buf[:want+1] // one more byte than expected: a longer chunk is caught
	n, err := io.ReadFull(or, buf)
	switch {
	case err == nil:
		return nil, fmt.Errorf("%s: %w: longer than the %d bytes the manifest says", where, ErrCorrupt, want)
	case err != io.ErrUnexpectedEOF && err != io.EOF:
		return nil, fmt.Errorf("%s: %w", where, err)
	case n != want:
		return nil, fmt.Errorf("%s: %w: %d bytes, manifest says %d", where, ErrCorrupt, n, want)
	}
	data := buf[:n]
	id := r.chunkIDOfSum(or.Sum())
	if r.cfg.Version == 1 {
		id = r.chunkID(data)
	}
	if id != ref.ID {
		return nil, fmt.Errorf("%s: %w: content does not match its id", where, ErrCorrupt)
	}
	return data, nil
}

// openChunk opens the stored bytes of a chunk object and says where they
// are, for error messages.
func (r *Repository) openChunk(ctx context.Context, id ChunkID) (string, io.ReadCloser, error) {
	if r.cfg.Version == 1 {
		name := chunkName(id)
		rc, err := r.store.Get(ctx, name, 0, -1)
		if err != nil {
			return "", nil, fmt.Errorf("get chunk %s: %w", name, err)
		}
		return "chunk " + name, rc, nil
	}
	e, err := r.locate(ctx, id)
	if err != nil {
		return "", nil, err
	}
	where := fmt.Sprintf("chunk %s (pack %s at %d)", id, e.pack.name(), e.off)
	rc, err := r.store.Get(ctx, e.pack.name(), int64(e.off), int64(e.length))
	if err != nil {
		return "", nil, fmt.Errorf("get %s: %w", where, err)
	}
	return where, rc, nil
}

// locate finds where a chunk lives, loading the chunk indexes on first use
// and again when they do not list it (a backup may have committed since).
func (r *Repository) locate(ctx context.Context, id ChunkID) (indexEntry, error) {
	r.locMu.Lock()
	defer r.locMu.Unlock()
	if e, ok := r.locs[id]; ok {
		return e, nil
	}
	locs, err := r.loadChunkIndex(ctx)
	if err != nil {
		return indexEntry{}, err
	}
	r.locs = locs
	if e, ok := locs[id]; ok {
		return e, nil
	}
	// Not indexed: its index object may have been lost. The packs'
	// trailers say where their members are.
	sc, err := r.scanUnindexed(ctx, locs)
	if err != nil {
		return indexEntry{}, err
	}
	for cid, e := range sc.found {
		if _, ok := locs[cid]; !ok {
			locs[cid] = e
		}
	}
	if e, ok := locs[id]; ok {
		return e, nil
	}
	return indexEntry{}, fmt.Errorf("chunk %s: %w: no chunk index lists it and no pack holds it", id, ErrNotExist)
}

// ChunkLocation says which object holds a chunk and at which byte range
// (for tests and diagnostics).
func (r *Repository) ChunkLocation(ctx context.Context, id ChunkID) (name string, off, length int64, err error) {
	if r.cfg.Version == 1 {
		return chunkName(id), 0, -1, nil
	}
	e, err := r.locate(ctx, id)
	if err != nil {
		return "", 0, 0, err
	}
	return e.pack.name(), int64(e.off), int64(e.length), nil
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
