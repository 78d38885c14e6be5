package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// Repair writes again what can be derived from intact objects: the refs
// object and catalog entry of a backup whose manifest reads back, and a
// chunk index for referenced chunks no index lists (found from their
// packs' trailers). It never deletes or overwrites anything (every write
// is a new object), so it is safe to run at any time; the caller holds the
// maintenance lock so no backup or expire changes what it reads. It needs
// the key (manifests are encrypted). Each line of the result says what
// was written.
func (r *Repository) Repair(ctx context.Context) ([]string, error) {
	if !r.CanRead() {
		return nil, ErrNoIdentity
	}
	ids, err := r.ListManifests(ctx)
	if err != nil {
		return nil, err
	}
	var done []string
	refd := map[ChunkID]struct{}{}
	for _, id := range ids {
		m, err := r.ReadManifest(ctx, id)
		if err != nil {
			continue // nothing to derive from; verify names it
		}
		chunks := m.chunkSet()
		for cid := range chunks {
			refd[cid] = struct{}{}
		}
		if missing, err := r.absentOrDamaged(ctx, refsPrefix+id, KindRefs); err != nil {
			return done, err
		} else if missing {
			entries := make([]indexEntry, 0, len(chunks))
			for cid, c := range chunks {
				entries = append(entries, indexEntry{id: cid, plain: c.Size})
			}
			if _, err := r.Put(ctx, refsPrefix+id, KindRefs, bytes.NewReader(marshalRefs(entries))); err != nil {
				return done, fmt.Errorf("repair: %w", err)
			}
			done = append(done, fmt.Sprintf("wrote %s%s (%d chunks) from backup %s's manifest", refsPrefix, id, len(entries), id))
		}
		if missing, err := r.absentOrDamaged(ctx, catalogPrefix+id, KindCatalog); err != nil {
			return done, err
		} else if missing {
			if err := r.writeSummary(ctx, m); err != nil {
				return done, fmt.Errorf("repair: %w", err)
			}
			done = append(done, fmt.Sprintf("wrote %s%s from backup %s's manifest", catalogPrefix, id, id))
		}
	}
	if r.cfg.Version == 1 {
		return done, nil
	}
	line, err := r.reindex(ctx, refd)
	if line != "" {
		done = append(done, line)
	}
	return done, err
}

// absentOrDamaged reports whether the derived object name is missing or
// does not read back; a damaged one is deleted, to be written again.
func (r *Repository) absentOrDamaged(ctx context.Context, name string, kind Kind) (bool, error) {
	_, err := r.ReadAll(ctx, name, kind)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, ErrNotExist):
		return true, nil
	case errors.Is(err, ErrCorrupt), errors.Is(err, ErrUnsupported):
		if err := r.store.Delete(ctx, name); err != nil {
			return false, fmt.Errorf("repair: delete damaged %s: %w", name, err)
		}
		return true, nil
	}
	return false, fmt.Errorf("repair: read %s: %w", name, err)
}

// reindex writes an index of the referenced chunks that no index lists,
// found in the trailers of the packs no index names.
func (r *Repository) reindex(ctx context.Context, refd map[ChunkID]struct{}) (string, error) {
	idx, err := r.loadChunkIndex(ctx)
	if err != nil {
		return "", fmt.Errorf("repair: %w", err)
	}
	need := false
	for cid := range refd {
		if _, ok := idx[cid]; !ok {
			need = true
			break
		}
	}
	if !need {
		return "", nil
	}
	sc, err := r.scanUnindexed(ctx, idx)
	if err != nil {
		return "", fmt.Errorf("repair: %w", err)
	}
	// Whole packs: those holding a referenced chunk are live, and their
	// other members may serve a later backup's deduplication.
	live := map[packID]bool{}
	for cid, e := range sc.found {
		if _, ok := refd[cid]; ok {
			live[e.pack] = true
		}
	}
	var entries []indexEntry
	for _, e := range sc.found {
		if live[e.pack] {
			entries = append(entries, e)
		}
	}
	if len(entries) == 0 {
		return "", nil
	}
	if err := r.writeChunkIndex(ctx, entries); err != nil {
		return "", fmt.Errorf("repair: write chunk index: %w", err)
	}
	r.locMu.Lock()
	r.locs = nil
	r.locMu.Unlock()
	return fmt.Sprintf("wrote a chunk index of %d chunks in %d packs no index listed", len(entries), len(live)), nil
}
