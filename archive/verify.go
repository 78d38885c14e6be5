package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// VerifyReport is what Verify found.
type VerifyReport struct {
	Objects  int64    `json:"objects"`
	Bytes    int64    `json:"bytes"`
	Backups  int      `json:"backups"`
	Problems []string `json:"problems"`
}

// OK reports whether verification found nothing wrong.
func (v *VerifyReport) OK() bool { return len(v.Problems) == 0 }

// ErrVerifyFailed is returned by callers that turn a report with problems
// into a failure.
var ErrVerifyFailed = errors.New("verification failed")

// Verify reads every object in the repository back through the object
// format (checksums, authentication, chunk ids) and checks that every chunk
// a committed backup references exists. progress, when set, is called after
// each object with the bytes verified so far.
func (r *Repository) Verify(ctx context.Context, progress func(objects, bytes int64)) (*VerifyReport, error) {
	if !r.CanRead() {
		return nil, ErrNoIdentity
	}
	rep := &VerifyReport{}
	present := make(map[ChunkID]struct{})
	err := r.store.List(ctx, "", "", func(o ObjectInfo) error {
		if strings.HasPrefix(o.Name, packPrefix) {
			members, err := r.verifyPack(ctx, o.Name, o.Size)
			for _, id := range members {
				present[id] = struct{}{}
			}
			if err != nil && !errors.Is(err, ErrNotExist) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				rep.Problems = append(rep.Problems, err.Error())
			}
			rep.Objects++
			rep.Bytes += o.Size
			if progress != nil {
				progress(rep.Objects, rep.Bytes)
			}
			return nil
		}
		if err := r.verifyObject(ctx, o.Name); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, ErrNotExist) {
				// Deleted since the listing by normal work (segment
				// consolidation, lock renewal, expiry): nothing to check.
				return nil
			}
			rep.Problems = append(rep.Problems, err.Error())
		} else if strings.HasPrefix(o.Name, "chunks/") {
			if id, err := ParseChunkID(o.Name[strings.LastIndexByte(o.Name, '/')+1:]); err == nil {
				present[id] = struct{}{}
			}
		}
		rep.Objects++
		rep.Bytes += o.Size
		if progress != nil {
			progress(rep.Objects, rep.Bytes)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", r.store.Location(), err)
	}
	ids, err := r.ListManifests(ctx)
	if err != nil {
		return nil, err
	}
	rep.Backups = len(ids)
	for _, id := range ids {
		m, err := r.ReadManifest(ctx, id)
		if err != nil {
			rep.Problems = append(rep.Problems, err.Error())
			continue
		}
		missing := 0
		for _, f := range m.Files {
			for _, c := range f.Chunks {
				if _, ok := present[c.ID]; ok {
					continue
				}
				// Not in the listing: written after it (a backup committed
				// while we verified) or really missing. Check it now.
				if _, err := r.readChunk(ctx, c); err != nil {
					if ctx.Err() != nil {
						return nil, ctx.Err()
					}
					missing++
					continue
				}
				present[c.ID] = struct{}{}
			}
		}
		if missing > 0 {
			rep.Problems = append(rep.Problems, fmt.Sprintf("backup %s: %d referenced chunks missing or corrupt", id, missing))
		}
	}
	return rep, nil
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
