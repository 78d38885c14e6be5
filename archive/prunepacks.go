package archive

import (
	"context"
	"errors"
	"fmt"
	"sort"
)

// repackBelow: a pack kept for its referenced chunks is rewritten when they
// fill less than this share of it, so expiring old backups gives space back
// even where their packs also hold chunks newer backups still use.
const repackBelow = 0.5

type packUse struct {
	name       string
	size, live int64 // bytes in the store; bytes of referenced members
}

// prunePacks deletes the packs that hold no chunk a kept backup references
// (including packs no index lists: left by a backup that died before its
// commit) and repacks those mostly dead: their referenced members are
// copied as they are (still sealed: no key needed) into new packs. Other
// packs are kept whole, their unreferenced chunks still indexed, so a later
// backup may deduplicate against them.
//
// Order, safe to interrupt anywhere: new packs are written first, then one
// index listing every chunk that stays where it now is, then the old
// indexes are deleted, then the packs. Until the old indexes are gone they
// point at old packs that still exist.
func (r *Repository) prunePacks(ctx context.Context, refs map[ChunkID]struct{}, dryRun bool) (Trimmed, error) {
	var t Trimmed
	idx, err := r.loadChunkIndex(ctx)
	if err != nil {
		return t, fmt.Errorf("expire: %w", err)
	}
	use := map[packID]*packUse{}
	if err := r.store.List(ctx, packPrefix, "", func(o ObjectInfo) error {
		p, err := parsePackName(o.Name)
		if err != nil {
			return err
		}
		use[p] = &packUse{name: o.Name, size: o.Size}
		return nil
	}); err != nil {
		return t, fmt.Errorf("expire: list packs: %w", err)
	}
	reindexed, err := r.indexFromPacks(ctx, idx, refs, use, &t)
	if err != nil {
		return t, err
	}
	for id, e := range idx {
		if _, ok := refs[id]; ok && use[e.pack] != nil {
			use[e.pack].live += int64(e.length)
		}
	}
	var doomed, repack []packID
	var deadStaying int64
	for p, u := range use {
		switch {
		case u.live == 0:
			doomed = append(doomed, p)
			t.Bytes += u.size
		case float64(u.live) < repackBelow*float64(u.size):
			repack = append(repack, p)
			t.Bytes += u.size - u.live
		default:
			deadStaying += max(0, u.size-u.live)
		}
	}
	sortPacks(doomed)
	sortPacks(repack)
	t.Objects = int64(len(doomed) + len(repack))
	if len(repack) > 0 {
		t.Detail = append(t.Detail, fmt.Sprintf("%d packs repacked: their referenced chunks copied into new packs", len(repack)))
	}
	if deadStaying > 0 {
		t.Detail = append(t.Detail, fmt.Sprintf("%d bytes of unreferenced chunks and pack framing stay in packs at least %.0f%% referenced", deadStaying, repackBelow*100))
	}
	if dryRun || len(doomed)+len(repack) == 0 && reindexed == 0 {
		return t, nil
	}
	moved, err := r.repack(ctx, repack, idx, refs)
	if err != nil {
		return t, err
	}
	gone := map[packID]bool{}
	for _, p := range append(doomed, repack...) {
		gone[p] = true
	}
	var entries []indexEntry
	for id, e := range idx {
		if m, ok := moved[id]; ok {
			entries = append(entries, m)
		} else if !gone[e.pack] {
			entries = append(entries, e)
		}
	}
	if err := r.replaceChunkIndex(ctx, entries); err != nil {
		return t, err
	}
	for _, p := range append(doomed, repack...) {
		if err := r.store.Delete(ctx, use[p].name); err != nil && !errors.Is(err, ErrNotExist) {
			return t, fmt.Errorf("expire: delete %s: %w", use[p].name, err)
		}
	}
	return t, nil
}

// indexFromPacks finds the referenced chunks no index lists in the
// trailers of the packs no index names (their index object was lost or is
// unreadable) and adds them to idx, so their packs count as live and the
// index expire writes lists them again. A pack whose trailer cannot be
// read may hold such chunks: it is kept whole. Referenced chunks found
// nowhere are reported; verify names them.
func (r *Repository) indexFromPacks(ctx context.Context, idx map[ChunkID]indexEntry, refs map[ChunkID]struct{},
	use map[packID]*packUse, t *Trimmed) (found int, err error) {
	missing := 0
	for id := range refs {
		if _, ok := idx[id]; !ok {
			missing++
		}
	}
	if missing == 0 {
		return 0, nil
	}
	sc, err := r.scanUnindexed(ctx, idx)
	if err != nil {
		return 0, fmt.Errorf("expire: %w", err)
	}
	for id := range refs {
		if _, ok := idx[id]; ok {
			continue
		}
		if e, ok := sc.found[id]; ok {
			idx[id] = e
			found++
		}
	}
	if found > 0 {
		t.Detail = append(t.Detail, fmt.Sprintf("%d referenced chunks no index listed were found in their packs and are indexed again", found))
	}
	for p, err := range sc.unreadable {
		if u := use[p]; u != nil {
			u.live = u.size // may hold what is missing: never deleted blind
			t.Detail = append(t.Detail, fmt.Sprintf("pack %s kept: its trailer is unreadable (%v)", u.name, err))
		}
	}
	if lost := missing - found; lost > 0 {
		t.Detail = append(t.Detail, fmt.Sprintf("%d chunks referenced by kept backups are in no pack: `tidemark verify` names the backups", lost))
	}
	return found, nil
}

// repack copies the referenced members of packs into new packs and says
// where each chunk went.
func (r *Repository) repack(ctx context.Context, packs []packID, idx map[ChunkID]indexEntry, refs map[ChunkID]struct{}) (map[ChunkID]indexEntry, error) {
	members := map[packID][]indexEntry{}
	for id, e := range idx {
		if _, ok := refs[id]; ok {
			members[e.pack] = append(members[e.pack], e)
		}
	}
	moved := map[ChunkID]indexEntry{}
	var w *packWriter
	finish := func() error {
		if w == nil {
			return nil
		}
		err := w.close()
		for _, e := range w.entries {
			moved[e.id] = indexEntry{id: e.id, pack: w.id, off: e.off, length: e.length, plain: e.plain, stored: e.length}
		}
		w = nil
		return err
	}
	for _, p := range packs {
		ms := members[p]
		sort.Slice(ms, func(i, j int) bool { return ms[i].off < ms[j].off })
		for _, e := range ms {
			obj, err := r.readRange(ctx, p.name(), int64(e.off), int64(e.length))
			if err != nil {
				if w != nil {
					w.abort(err)
				}
				return nil, fmt.Errorf("expire: repack %s: %w", p.name(), err)
			}
			if w == nil {
				if w, err = r.newPackWriter(ctx, nil); err != nil {
					return nil, fmt.Errorf("expire: repack: %w", err)
				}
			}
			off := w.size
			if err := w.write(obj); err != nil {
				w.abort(err)
				return nil, fmt.Errorf("expire: repack: %w", err)
			}
			w.entries = append(w.entries, packEntry{id: e.id, off: uint32(off), length: e.length, plain: e.plain})
			if w.size >= packTarget {
				if err := finish(); err != nil {
					return nil, fmt.Errorf("expire: repack: %w", err)
				}
			}
		}
	}
	if err := finish(); err != nil {
		return nil, fmt.Errorf("expire: repack: %w", err)
	}
	return moved, nil
}

// replaceChunkIndex writes one index of entries, then deletes the index
// objects that existed before it.
func (r *Repository) replaceChunkIndex(ctx context.Context, entries []indexEntry) error {
	var old []string
	if err := r.store.List(ctx, chunkIndexPrefix, "", func(o ObjectInfo) error {
		old = append(old, o.Name)
		return nil
	}); err != nil {
		return fmt.Errorf("expire: list chunk indexes: %w", err)
	}
	sort.Slice(entries, func(i, j int) bool { return string(entries[i].id[:]) < string(entries[j].id[:]) })
	if err := r.writeChunkIndex(ctx, entries); err != nil {
		return fmt.Errorf("expire: write chunk index: %w", err)
	}
	r.locMu.Lock()
	r.locs = nil
	r.locMu.Unlock()
	for _, name := range old {
		if err := r.store.Delete(ctx, name); err != nil && !errors.Is(err, ErrNotExist) {
			return fmt.Errorf("expire: delete chunk index %s: %w", name, err)
		}
	}
	return nil
}

func sortPacks(ps []packID) {
	sort.Slice(ps, func(i, j int) bool { return string(ps[i][:]) < string(ps[j][:]) })
}
