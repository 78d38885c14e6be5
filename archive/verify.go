package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// VerifyReport is what Verify found.
type VerifyReport struct {
	Objects  int64    `json:"objects"`
	Bytes    int64    `json:"bytes"`
	Backups  int      `json:"backups"`
	Problems []string `json:"problems"`
	// Leftovers are what interrupted work left that nothing refers to
	// (a killed backup's packs, refs and catalog entries, a killed write's
	// temporary file): not damage, but space expire gives back.
	Leftovers []string `json:"leftovers"`
}

// OK reports whether verification found nothing wrong.
func (v *VerifyReport) OK() bool { return len(v.Problems) == 0 }

// ErrVerifyFailed is returned by callers that turn a report with problems
// into a failure.
var ErrVerifyFailed = errors.New("verification failed")

// verifier is one Verify run's findings.
type verifier struct {
	r       *Repository
	rep     *VerifyReport
	present map[ChunkID]struct{} // chunks whose stored bytes verified
	packs   map[packID]ObjectInfo
	members map[packID][]ChunkID // what each pack's trailer lists
	names   map[string]bool      // every object listed, by name
	refd    map[ChunkID]struct{} // chunks committed backups reference
	indexed map[packID]bool      // packs an index entry names
}

// Verify reads every object in the repository back through the object
// format (checksums, authentication, chunk ids) and checks what a restore
// and expire need of every committed backup: each chunk it references is
// stored, intact and indexed, and its refs and catalog entry exist and
// agree with its manifest. It also lists what interrupted work left
// behind. progress, when set, is called after each object with the bytes
// verified so far.
func (r *Repository) Verify(ctx context.Context, progress func(objects, bytes int64)) (*VerifyReport, error) {
	if !r.CanRead() {
		return nil, ErrNoIdentity
	}
	v := &verifier{r: r, rep: &VerifyReport{Problems: []string{}, Leftovers: []string{}}, present: map[ChunkID]struct{}{},
		packs: map[packID]ObjectInfo{}, members: map[packID][]ChunkID{}, names: map[string]bool{}, refd: map[ChunkID]struct{}{},
		indexed: map[packID]bool{}}
	if err := v.objects(ctx, progress); err != nil {
		return nil, err
	}
	if err := v.backups(ctx); err != nil {
		return nil, err
	}
	v.segments(ctx)
	if err := v.leftovers(ctx); err != nil {
		return nil, err
	}
	return v.rep, nil
}

// objects reads every listed object back.
func (v *verifier) objects(ctx context.Context, progress func(objects, bytes int64)) error {
	r, rep := v.r, v.rep
	err := r.store.List(ctx, "", "", func(o ObjectInfo) error {
		v.names[o.Name] = true
		var err error
		if strings.HasPrefix(o.Name, packPrefix) {
			var members []ChunkID
			members, err = r.verifyPack(ctx, o.Name, o.Size)
			for _, id := range members {
				v.present[id] = struct{}{}
			}
			if p, perr := parsePackName(o.Name); perr == nil {
				v.packs[p] = o
				v.members[p] = members
			}
		} else {
			err = r.verifyObject(ctx, o.Name)
			if err == nil && strings.HasPrefix(o.Name, "chunks/") {
				if id, err := ParseChunkID(o.Name[strings.LastIndexByte(o.Name, '/')+1:]); err == nil {
					v.present[id] = struct{}{}
				}
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, ErrNotExist) {
				// Deleted since the listing by normal work (segment
				// consolidation, lock renewal, expiry): nothing to check.
				delete(v.names, o.Name)
				return nil
			}
			rep.Problems = append(rep.Problems, err.Error())
		}
		rep.Objects++
		rep.Bytes += o.Size
		if progress != nil {
			progress(rep.Objects, rep.Bytes)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("verify %s: %w", r.store.Location(), err)
	}
	return nil
}

// backups checks what restore and expire need of every committed backup.
func (v *verifier) backups(ctx context.Context) error {
	r, rep := v.r, v.rep
	ids, err := r.ListManifests(ctx)
	if err != nil {
		return err
	}
	rep.Backups = len(ids)
	var idx map[ChunkID]indexEntry
	if r.cfg.Version != 1 {
		if idx, err = r.loadChunkIndex(ctx); err != nil {
			return err
		}
		for _, e := range idx {
			v.indexed[e.pack] = true
		}
	}
	catalogued := false // backups before the first with a catalog entry predate the catalog
	for _, id := range ids {
		m, err := r.ReadManifest(ctx, id)
		if errors.Is(err, ErrNotExist) {
			rep.Backups-- // expired while we verified
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rep.Problems = append(rep.Problems, fmt.Sprintf("backup %s cannot be restored: its manifest %s%s does not read back (%v); restores choose an older backup",
				id, manifestPrefix, id, err))
			continue
		}
		chunks := m.chunkSet()
		for cid := range chunks {
			v.refd[cid] = struct{}{}
		}
		if err := v.chunks(ctx, m, chunks, idx); err != nil {
			return err
		}
		v.refs(ctx, id, chunks)
		if v.exists(ctx, catalogPrefix+id) {
			catalogued = true
			v.catalog(ctx, m)
		} else if catalogued {
			rep.Problems = append(rep.Problems, fmt.Sprintf("backup %s: its catalog entry %s%s is missing: status and retention cannot see it without the key (`tidemark verify --repair` writes it again)",
				id, catalogPrefix, id))
		}
	}
	return nil
}

// chunkSet is every chunk a manifest references, once.
func (m *Manifest) chunkSet() map[ChunkID]ChunkRef {
	set := map[ChunkID]ChunkRef{}
	for _, f := range m.Files {
		for _, c := range f.Chunks {
			set[c.ID] = c
		}
	}
	return set
}

// chunks checks that every chunk of m is stored intact and, in format 2,
// that an index says where.
func (v *verifier) chunks(ctx context.Context, m *Manifest, chunks map[ChunkID]ChunkRef, idx map[ChunkID]indexEntry) error {
	missing, unindexed := 0, 0
	reloaded := false
	var firstUnindexed ChunkID
	var firstMissing error
	for cid, c := range chunks {
		if _, ok := v.present[cid]; !ok {
			// Not in the listing: written after it (a backup committed
			// while we verified) or really missing. Check it now.
			if _, err := v.r.readChunk(ctx, c); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if missing++; missing == 1 {
					firstMissing = v.whereMissing(cid, idx, err)
				}
				continue
			}
			v.present[cid] = struct{}{}
		}
		if idx == nil {
			continue
		}
		e, ok := idx[cid]
		if !ok && !reloaded {
			// A backup that committed since the index was read.
			reloaded = true
			fresh, err := v.r.loadChunkIndex(ctx)
			if err != nil {
				return err
			}
			for k, fe := range fresh {
				idx[k] = fe
				v.indexed[fe.pack] = true
			}
			e, ok = idx[cid]
		}
		if !ok || !v.packListed(e.pack) {
			if unindexed++; unindexed == 1 {
				firstUnindexed = cid
			}
		}
	}
	if missing > 0 {
		v.rep.Problems = append(v.rep.Problems, fmt.Sprintf("backup %s: %d referenced chunks missing or corrupt (first: %v)", m.ID, missing, firstMissing))
	}
	if unindexed > 0 {
		v.rep.Problems = append(v.rep.Problems, fmt.Sprintf("backup %s: %d referenced chunks are listed in no chunk index (first: %s): an index object under %s was lost or is unreadable; restores find them from their packs' trailers, and the next expire (or `tidemark verify --repair`) indexes them again",
			m.ID, unindexed, firstUnindexed, chunkIndexPrefix))
	}
	return nil
}

// whereMissing says where a chunk that did not read back should be.
func (v *verifier) whereMissing(cid ChunkID, idx map[ChunkID]indexEntry, err error) error {
	if e, ok := idx[cid]; ok && !v.packListed(e.pack) {
		return fmt.Errorf("chunk %s: its pack %s is gone", cid, e.pack.name())
	}
	return err
}

// packListed reports whether the pack was in the listing (or, written
// since, is there now).
func (v *verifier) packListed(p packID) bool {
	if _, ok := v.packs[p]; ok {
		return true
	}
	_, err := v.r.store.Stat(context.Background(), p.name())
	return err == nil
}

// exists reports whether name was listed or, written since (a backup that
// committed while verify ran), exists now.
func (v *verifier) exists(ctx context.Context, name string) bool {
	if v.names[name] {
		return true
	}
	_, err := v.r.store.Stat(ctx, name)
	return err == nil
}

// refs checks that a backup's refs object exists and names every chunk
// its manifest references: expire, which holds no key, decides from it.
func (v *verifier) refs(ctx context.Context, id string, chunks map[ChunkID]ChunkRef) {
	name := refsPrefix + id
	if !v.exists(ctx, name) {
		v.rep.Problems = append(v.rep.Problems, fmt.Sprintf("backup %s: its refs object %s is missing: expire cannot tell which chunks the backup needs and refuses to run (`tidemark verify --repair` writes it again from the manifest)",
			id, name))
		return
	}
	set := map[ChunkID]struct{}{}
	if err := v.r.readIDs(ctx, name, KindRefs, set); err != nil {
		return // reported with the object
	}
	lacking := 0
	for cid := range chunks {
		if _, ok := set[cid]; !ok {
			lacking++
		}
	}
	if lacking > 0 {
		v.rep.Problems = append(v.rep.Problems, fmt.Sprintf("backup %s: its refs object %s lacks %d of the chunks its manifest references: expire would delete them", id, name, lacking))
	}
}

// catalog checks that a backup's catalog entry says what its manifest says.
func (v *verifier) catalog(ctx context.Context, m *Manifest) {
	b, err := v.r.ReadAll(ctx, catalogPrefix+m.ID, KindCatalog)
	if err != nil {
		return // reported with the object
	}
	var got BackupSummary
	want := SummaryOf(m)
	if json.Unmarshal(b, &got) != nil || got.ID != want.ID || got.Engine != want.Engine || got.Start != want.Start ||
		got.Stop != want.Stop || got.Stream != want.Stream || !got.Finished.Equal(want.Finished) {
		v.rep.Problems = append(v.rep.Problems, fmt.Sprintf("backup %s: its catalog entry %s%s disagrees with its manifest: restore planning would be misled",
			m.ID, catalogPrefix, m.ID))
	}
}

// segments checks that every stream segment an index entry commits has its
// data: readers trust the index, so a lost data object is a hole only a
// read would find.
func (v *verifier) segments(ctx context.Context) {
	var missing []string
	for name := range v.names {
		i := strings.Index(name, "/idx/")
		if i < 0 {
			continue
		}
		data := name[:i] + "/seg/" + name[i+len("/idx/"):]
		if v.exists(ctx, data) {
			continue
		}
		if _, err := v.r.store.Stat(ctx, name); err == nil { // not consolidated away meanwhile
			missing = append(missing, fmt.Sprintf("stream segment %s is missing: its index %s commits it, so a restore that needs it fails", data, name))
		}
	}
	sort.Strings(missing)
	v.rep.Problems = append(v.rep.Problems, missing...)
}

// leftovers lists what interrupted work left that nothing refers to.
func (v *verifier) leftovers(ctx context.Context) error {
	for name := range v.names {
		for _, prefix := range []string{refsPrefix, catalogPrefix} {
			if id, ok := strings.CutPrefix(name, prefix); ok && !v.names[manifestPrefix+id] {
				v.rep.Leftovers = append(v.rep.Leftovers, fmt.Sprintf("%s: no backup %s%s commits it (a backup died before its commit, or an expire was interrupted); expire deletes it",
					name, manifestPrefix, id))
			}
		}
	}
	for p, o := range v.packs {
		if v.indexed[p] {
			continue
		}
		used := false
		for _, cid := range v.members[p] {
			if _, ok := v.refd[cid]; ok {
				used = true
				break
			}
		}
		if !used && v.r.cfg.Version != 1 {
			v.rep.Leftovers = append(v.rep.Leftovers, fmt.Sprintf("%s (%d bytes): in no chunk index and referenced by no backup (a backup died before its commit); expire deletes it",
				o.Name, o.Size))
		}
	}
	abandoned, err := v.r.abandonedOperations(ctx, time.Now())
	if err != nil {
		return err
	}
	for _, o := range abandoned {
		v.rep.Leftovers = append(v.rep.Leftovers, fmt.Sprintf("%s%s/: record of a %s by %s that stopped at %s (its process died); expire deletes it",
			operationPrefix, o.ID, o.Kind, o.Holder, o.Updated.UTC().Format(time.RFC3339)))
	}
	if err := v.r.TempFiles(ctx, func(o ObjectInfo) error {
		v.rep.Leftovers = append(v.rep.Leftovers, fmt.Sprintf("%s (%d bytes, last written %s): temporary file of a write that never finished (its writer was killed); expire removes such files once they are %s old",
			o.Name, o.Size, o.ModTime.UTC().Format(time.RFC3339), TempFileAge))
		return nil
	}); err != nil {
		return err
	}
	sort.Strings(v.rep.Leftovers)
	return nil
}

// verifyObject reads one object to its end, taking its kind from its own
// header, and for chunks also checks the content against the name.
func (r *Repository) verifyObject(ctx context.Context, name string) error {
	if name == wrappedKeyName {
		return nil // needs the passphrase, not the repository key; checked at open
	}
	kind, err := r.peekKind(ctx, name)
	if err != nil {
		return err
	}
	if kind == KindChunk {
		id, err := ParseChunkID(name[strings.LastIndexByte(name, '/')+1:])
		if err != nil {
			return fmt.Errorf("chunk %s: unexpected name", name)
		}
		rc, err := getWith(ctx, r.store, r.chunks, name, KindChunk)
		if err != nil {
			return err
		}
		defer rc.Close()
		data, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		if r.chunkID(data) != id {
			return fmt.Errorf("chunk %s: %w: content does not match its id", name, ErrCorrupt)
		}
		return nil
	}
	codec := r.codecFor(kind)
	if kind == KindConfig {
		codec, _ = NewCodec(CodecOptions{})
	}
	rc, err := getWith(ctx, r.store, codec, name, kind)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

func (r *Repository) peekKind(ctx context.Context, name string) (Kind, error) {
	rc, err := r.store.Get(ctx, name, 0, headerLen)
	if err != nil {
		return 0, fmt.Errorf("object %s: %w", name, err)
	}
	defer rc.Close()
	var hb [headerLen]byte
	if _, err := io.ReadFull(rc, hb[:]); err != nil {
		return 0, fmt.Errorf("object %s: %w: truncated header", name, ErrCorrupt)
	}
	h, err := parseHeader(hb[:])
	if err != nil {
		return 0, fmt.Errorf("object %s: %w", name, err)
	}
	return Kind(h.kind), nil
}

// verifyPack checks a pack's header and trailer and reads every member
// through the object format, checking each against its id. It returns the
// ids of the members that verified.
func (r *Repository) verifyPack(ctx context.Context, name string, size int64) ([]ChunkID, error) {
	if _, err := parsePackName(name); err != nil {
		return nil, err
	}
	entries, err := r.readPackTrailer(ctx, name, size)
	if err != nil {
		return nil, err
	}
	hb, err := r.readRange(ctx, name, 0, headerLen)
	if err != nil {
		return nil, err
	}
	if h, err := parseHeader(hb); err != nil || Kind(h.kind) != KindPack {
		return nil, fmt.Errorf("pack %s: %w: bad header", name, ErrCorrupt)
	}
	var (
		ok  []ChunkID
		bad []error
	)
	for _, e := range entries {
		rc, err := r.store.Get(ctx, name, int64(e.off), int64(e.length))
		if err != nil {
			return ok, fmt.Errorf("pack %s: %w", name, err)
		}
		or, err := r.chunks.NewReader(rc, KindChunk)
		if err == nil {
			var n int64
			n, err = io.Copy(io.Discard, or)
			or.Close()
			if err == nil && (n != int64(e.plain) || r.chunkIDOfSum(or.Sum()) != e.id) {
				err = fmt.Errorf("%w: content does not match its id", ErrCorrupt)
			}
		}
		rc.Close()
		if err != nil {
			if errors.Is(err, ErrNoIdentity) || errors.Is(err, ErrWrongIdentity) {
				return ok, fmt.Errorf("pack %s: %w", name, err)
			}
			bad = append(bad, fmt.Errorf("chunk %s (pack %s at %d): %w", e.id, name, e.off, err))
			continue
		}
		ok = append(ok, e.id)
	}
	return ok, errors.Join(bad...)
}

func (r *Repository) readRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	rc, err := r.store.Get(ctx, name, off, n)
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", name, err)
	}
	defer rc.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(rc, b); err != nil {
		return nil, fmt.Errorf("object %s: %w: %v", name, ErrCorrupt, err)
	}
	return b, nil
}
