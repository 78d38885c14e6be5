package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tidemark/tidemark/archive"
	pgbackup "github.com/tidemark/tidemark/basebackup/postgres"
)

// Restoring a PostgreSQL 17+ block-level incremental backup: every
// INCREMENTAL.<name> file of the chosen backup is rebuilt into <name> from
// the chain of backups it refers to (as pg_combinebackup does, which is
// not needed): a block comes from the newest backup in the chain that
// holds it, blocks below the newest truncation length that no backup
// holds are zeros, and the chain ends at the first full copy of the file.

// incrementalMagic starts every incremental file (PostgreSQL's INCREMENTAL_MAGIC).
const incrementalMagic = 0xd3ae1f0d

// maxRelSegBlocks bounds an incremental header: a relation segment has at
// most 1 GiB / BLCKSZ blocks (RELSEG_SIZE, 131072 at 8 kB).
const maxRelSegBlocks = 1 << 17

// incrHeader is the header of an incremental file.
type incrHeader struct {
	blocks     []uint32 // block numbers whose contents follow, ascending
	truncation uint32   // the file's length in blocks at the backup's start
	length     int64    // bytes before the first block's contents
}

// parseIncrHeader parses an incremental file's header from its first bytes
// (at least 12; more as the block count needs).
func parseIncrHeader(b []byte, blockSize int) (*incrHeader, error) {
	if len(b) < 12 {
		return nil, fmt.Errorf("%w: incremental file of %d bytes", archive.ErrCorrupt, len(b))
	}
	if m := binary.LittleEndian.Uint32(b); m != incrementalMagic {
		return nil, fmt.Errorf("%w: incremental file magic %#x, want %#x", archive.ErrCorrupt, m, incrementalMagic)
	}
	n, trunc := binary.LittleEndian.Uint32(b[4:]), binary.LittleEndian.Uint32(b[8:])
	if n > maxRelSegBlocks || trunc > maxRelSegBlocks {
		return nil, fmt.Errorf("%w: incremental file with %d blocks, truncation length %d", archive.ErrCorrupt, n, trunc)
	}
	h := &incrHeader{truncation: trunc, length: 12 + 4*int64(n)}
	if int64(len(b)) < h.length {
		return nil, fmt.Errorf("%w: incremental header cut short (%d of %d bytes)", archive.ErrCorrupt, len(b), h.length)
	}
	h.blocks = make([]uint32, n)
	for i := range h.blocks {
		h.blocks[i] = binary.LittleEndian.Uint32(b[12+4*i:])
		if i > 0 && h.blocks[i] <= h.blocks[i-1] {
			return nil, fmt.Errorf("%w: incremental file's block numbers are not ascending", archive.ErrCorrupt)
		}
	}
	if n > 0 && h.length%int64(blockSize) != 0 { // padded so blocks start aligned
		h.length += int64(blockSize) - h.length%int64(blockSize)
	}
	return h, nil
}

// chainBackup is one backup of an incremental chain, its files by path.
type chainBackup struct {
	id    string
	files map[string]*archive.FileEntry
}

// rebuilder plans the files of an incremental backup.
type rebuilder struct {
	repo      *archive.Repository
	blockSize int64
	chain     []chainBackup // the chosen backup first, then its references
	headers   map[*archive.FileEntry]*incrHeader
}

func newRebuilder(repo *archive.Repository, meta pgbackup.Meta, chain []*archive.Manifest) *rebuilder {
	r := &rebuilder{repo: repo, blockSize: int64(meta.BlockSize), headers: map[*archive.FileEntry]*incrHeader{}}
	if r.blockSize <= 0 {
		r.blockSize = 8192
	}
	for _, m := range chain {
		cb := chainBackup{id: m.ID, files: make(map[string]*archive.FileEntry, len(m.Files))}
		for i := range m.Files {
			cb.files[m.Files[i].Path] = &m.Files[i]
		}
		r.chain = append(r.chain, cb)
	}
	return r
}

// isIncremental reports whether a backup file is an incremental one.
func isIncremental(p string) bool { return strings.HasPrefix(path.Base(p), pgbackup.IncrementalPrefix) }

// fullPath is the path an incremental file is rebuilt at.
func fullPath(p string) string {
	return path.Join(path.Dir(p), strings.TrimPrefix(path.Base(p), pgbackup.IncrementalPrefix))
}

func (r *rebuilder) header(ctx context.Context, f *archive.FileEntry) (*incrHeader, error) {
	if h, ok := r.headers[f]; ok {
		return h, nil
	}
	// A header is at most 12 + 4 × 131072 bytes: within the first chunk or two.
	var b []byte
	for _, ref := range f.Chunks {
		data, err := r.repo.ReadChunk(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f.Path, err)
		}
		if b = append(b, data...); len(b) >= 12 && int64(len(b)) >= 12+4*int64(binary.LittleEndian.Uint32(b[4:])) {
			break
		}
	}
	h, err := parseIncrHeader(b, int(r.blockSize))
	if err == nil {
		err = h.checkSize(f, r.blockSize)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	r.headers[f] = h
	return h, nil
}

// checkSize: an incremental file is its header and its blocks, no more.
func (h *incrHeader) checkSize(f *archive.FileEntry, bs int64) error {
	if want := h.length + int64(len(h.blocks))*bs; f.Size != want {
		return fmt.Errorf("%s: %w: %d bytes, its header says %d", f.Path, archive.ErrCorrupt, f.Size, want)
	}
	return nil
}

// source is where one block of a rebuilt file comes from.
type source struct {
	file *archive.FileEntry // nil: zeros
	off  int64
}

// plan rebuilds the incremental file f of the chosen backup.
func (r *rebuilder) plan(ctx context.Context, f *archive.FileEntry) (outPlan, error) {
	latest, err := r.header(ctx, f)
	if err != nil {
		return outPlan{}, err
	}
	bs := r.blockSize
	nblocks := int64(latest.truncation)
	if n := len(latest.blocks); n > 0 && int64(latest.blocks[n-1])+1 > nblocks {
		nblocks = int64(latest.blocks[n-1]) + 1
	}
	src := make([]source, nblocks)
	for i, b := range latest.blocks {
		src[b] = source{f, latest.length + int64(i)*bs}
	}
	name, rel := path.Base(fullPath(f.Path)), fullPath(f.Path)
	found := false
	for _, older := range r.chain[1:] {
		if full, ok := older.files[rel]; ok {
			for b := int64(0); b < int64(latest.truncation) && b < full.Size/bs; b++ {
				if src[b].file == nil {
					src[b] = source{full, b * bs}
				}
			}
			found = true
			break
		}
		inc, ok := older.files[path.Join(path.Dir(rel), pgbackup.IncrementalPrefix+name)]
		if !ok {
			return outPlan{}, fmt.Errorf("%w: %s of backup %s needs %s from backup %s, which holds neither it nor its incremental file",
				archive.ErrCorrupt, f.Path, r.chain[0].id, rel, older.id)
		}
		h, err := r.header(ctx, inc)
		if err != nil {
			return outPlan{}, err
		}
		for i, b := range h.blocks {
			if b < latest.truncation && src[b].file == nil {
				src[b] = source{inc, h.length + int64(i)*bs}
			}
		}
	}
	if !found {
		return outPlan{}, fmt.Errorf("%w: no backup in the chain of %s holds a full copy of %s", archive.ErrCorrupt, r.chain[0].id, rel)
	}
	out := *f
	out.Path, out.Size, out.Chunks = rel, nblocks*bs, nil
	ps, err := pieces(src, bs)
	if err != nil {
		return outPlan{}, fmt.Errorf("rebuild %s: %w", rel, err)
	}
	return outPlan{entry: out, pieces: ps}, nil
}

// pieces turns block sources into chunk pieces: runs of blocks contiguous
// in one source file, cut at that file's chunk boundaries.
func pieces(src []source, bs int64) ([]piece, error) {
	starts := map[*archive.FileEntry][]int64{}
	chunkAt := func(f *archive.FileEntry, off int64) int {
		s, ok := starts[f]
		if !ok {
			var o int64
			for _, c := range f.Chunks {
				s = append(s, o)
				o += int64(c.Size)
			}
			starts[f] = s
		}
		return sort.Search(len(s), func(i int) bool { return s[i] > off }) - 1
	}
	var out []piece
	for b := 0; b < len(src); {
		s := src[b]
		if s.file == nil {
			b++
			continue
		}
		n := 1 // blocks in this run
		for b+n < len(src) && src[b+n].file == s.file && src[b+n].off == s.off+int64(n)*bs {
			n++
		}
		dst, off, left := int64(b)*bs, s.off, int64(n)*bs
		for left > 0 {
			i := chunkAt(s.file, off)
			if i < 0 || off-starts[s.file][i] >= int64(s.file.Chunks[i].Size) {
				return nil, fmt.Errorf("%w: %s has no byte %d", archive.ErrCorrupt, s.file.Path, off)
			}
			from := off - starts[s.file][i]
			take := min(left, int64(s.file.Chunks[i].Size)-from)
			out = append(out, piece{ref: s.file.Chunks[i], from: from, n: take, off: dst})
			dst, off, left = dst+take, off+take, left-take
		}
		b += n
	}
	return out, nil
}

// rebuildPlans splits an incremental backup's regular files into those
// written as stored and the plans of the files rebuilt from the chain.
// The server's backup_manifest is left out: it describes the incremental
// files, not the rebuilt directory, so pg_verifybackup would reject it.
func rebuildPlans(ctx context.Context, cfg Config, plan *Plan, files []archive.FileEntry) ([]archive.FileEntry, []outPlan, error) {
	if plan.Meta.IncrementalFrom == "" {
		return files, nil, nil
	}
	r := newRebuilder(cfg.Repo, plan.Meta, append([]*archive.Manifest{plan.Backup}, plan.Chain...))
	var kept []archive.FileEntry
	var rebuilt []outPlan
	for i := range files {
		f := &files[i]
		switch {
		case f.Path == pgbackup.ManifestFile:
		case isIncremental(f.Path):
			p, err := r.plan(ctx, r.chain[0].files[f.Path])
			if err != nil {
				return nil, nil, err
			}
			rebuilt = append(rebuilt, p)
		default:
			kept = append(kept, *f)
		}
	}
	cfg.Log.Info("rebuilding files of an incremental backup from its chain", "backup", plan.Backup.ID,
		"chain", len(plan.Chain)+1, "rebuilt_files", len(rebuilt))
	return kept, rebuilt, nil
}

// writeRebuilt writes the rebuilt files (over what a delta restore found),
// then makes backup_label that of a full backup.
func writeRebuilt(ctx context.Context, cfg Config, rebuilt []outPlan, progress func(int64)) error {
	if rebuilt == nil {
		return nil
	}
	if cfg.Delta {
		// What an earlier restore left there; a stale backup_manifest
		// would describe another backup.
		paths := []string{pgbackup.ManifestFile}
		for _, p := range rebuilt {
			paths = append(paths, p.entry.Path)
		}
		for _, p := range paths {
			err := os.Remove(filepath.Join(cfg.TargetDir, filepath.FromSlash(p)))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	if err := writePlans(ctx, cfg.Repo, cfg.TargetDir, rebuilt, cfg.Jobs, progress); err != nil {
		return err
	}
	return fullBackupLabel(filepath.Join(cfg.TargetDir, "backup_label"))
}

// fullBackupLabel drops the INCREMENTAL FROM lines from backup_label:
// PostgreSQL refuses to start on an incremental backup's label ("this is
// an incremental backup, not a data directory"); once rebuilt, it is not.
func fullBackupLabel(p string) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("backup_label: %w", err)
	}
	var out []byte
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte("INCREMENTAL FROM ")) {
			out = append(out, line...)
		}
	}
	return os.WriteFile(p, out, 0o600)
}
