package archive

import (
	"context"
	"errors"
	"fmt"
)

// The chunk index is derived data: every pack's trailer lists its members
// (ids, offsets, sizes; unencrypted), so where a chunk lives can always be
// found from the packs alone. Readers fall back to the trailers when an
// index object was lost, so a deleted index makes nothing unrestorable,
// and expire never takes a pack whose index is gone for garbage.

// readPackTrailer reads and checks a pack's trailer.
func (r *Repository) readPackTrailer(ctx context.Context, name string, size int64) ([]packEntry, error) {
	tailLen := min(size, 1<<20)
	tail, err := r.readRange(ctx, name, size-tailLen, tailLen)
	if err != nil {
		return nil, err
	}
	entries, err := parsePackTrailer(tail, size)
	if errors.Is(err, ErrCorrupt) && tailLen < size {
		// A trailer longer than what was fetched: fetch the whole pack's end.
		if tail, err = r.readRange(ctx, name, 0, size); err == nil {
			entries, err = parsePackTrailer(tail, size)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", name, err)
	}
	return entries, nil
}

// packScan is what the trailers of the packs no index lists hold.
type packScan struct {
	found      map[ChunkID]indexEntry // chunks of those packs, by id
	packs      map[packID]int64       // the packs scanned, with their sizes
	unreadable map[packID]error       // packs whose trailer could not be read
}

// scanUnindexed reads the trailers of the packs that no entry of idx
// names: what an index that was lost (or never written, by a backup that
// died before its commit) would have listed.
func (r *Repository) scanUnindexed(ctx context.Context, idx map[ChunkID]indexEntry) (*packScan, error) {
	indexed := map[packID]bool{}
	for _, e := range idx {
		indexed[e.pack] = true
	}
	sc := &packScan{found: map[ChunkID]indexEntry{}, packs: map[packID]int64{}, unreadable: map[packID]error{}}
	var todo []ObjectInfo
	if err := r.store.List(ctx, packPrefix, "", func(o ObjectInfo) error {
		p, err := parsePackName(o.Name)
		if err == nil && !indexed[p] {
			todo = append(todo, o)
			sc.packs[p] = o.Size
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	for _, o := range todo {
		p, _ := parsePackName(o.Name)
		entries, err := r.readPackTrailer(ctx, o.Name, o.Size)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			sc.unreadable[p] = err
			continue
		}
		for _, e := range entries {
			if _, dup := sc.found[e.id]; !dup {
				sc.found[e.id] = indexEntry{id: e.id, pack: p, off: e.off, length: e.length, plain: e.plain, stored: e.length}
			}
		}
	}
	return sc, nil
}

// Locatable checks, before a restore writes anything, that every chunk m
// references can be found: listed by an index (or a pack's trailer) in a
// pack that exists. It reads no chunk; damage inside a pack shows only
// when the chunk is read (and verify finds it).
func (r *Repository) Locatable(ctx context.Context, m *Manifest) error {
	if r.cfg.Version == 1 {
		return nil
	}
	packs := map[packID]bool{}
	if err := r.store.List(ctx, packPrefix, "", func(o ObjectInfo) error {
		if p, err := parsePackName(o.Name); err == nil {
			packs[p] = true
		}
		return nil
	}); err != nil {
		return fmt.Errorf("list packs: %w", err)
	}
	for cid := range m.chunkSet() {
		e, err := r.locate(ctx, cid)
		if err != nil {
			return err
		}
		if !packs[e.pack] {
			return fmt.Errorf("chunk %s: %w: its pack %s is gone", cid, ErrNotExist, e.pack.name())
		}
	}
	return nil
}
