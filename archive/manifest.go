package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// A base backup is committed by three objects written after all its chunks
// and their index:
//
//	refs/<id>     unencrypted: the chunk ids it references (for retention,
//	              which runs on hosts holding only public keys)
//	catalog/<id>  unencrypted: times, positions, sizes (catalog.go)
//	backups/<id>  encrypted manifest: files, chunk lists, engine metadata —
//	              written last; a backup without it does not exist.
const (
	manifestPrefix  = "backups/"
	refsPrefix      = "refs/"
	ManifestVersion = 1
)

// Manifest describes one base backup. Engine-specific details (LSNs, binlog
// coordinates, oplog timestamps) go in EngineMeta, decoded by the engine.
type Manifest struct {
	Version  int       `json:"version"`
	ID       string    `json:"id"`
	Engine   string    `json:"engine"`
	Type     string    `json:"type"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Start    string    `json:"start,omitempty"`  // engine stream position a restore replays from
	Stop     string    `json:"stop,omitempty"`   // position from which the backup is consistent
	Stream   string    `json:"stream,omitempty"` // archive stream it pairs with (binlog, oplog)
	// DependsOn names the backups whose files a restore of this one also
	// reads (a PostgreSQL 17 incremental's reference); retention keeps them
	// while this one is kept.
	DependsOn  []string        `json:"depends_on,omitempty"`
	Files      []FileEntry     `json:"files"`
	Stats      ChunkStats      `json:"stats"`
	EngineMeta json.RawMessage `json:"engine_meta,omitempty"`
}

// FileEntry is one file of a base backup.
type FileEntry struct {
	Path    string          `json:"path"`
	Size    int64           `json:"size"`
	Mode    uint32          `json:"mode,omitempty"`
	ModTime time.Time       `json:"mtime,omitempty"`
	Link    string          `json:"link,omitempty"` // symlink target
	Chunks  []ChunkRef      `json:"chunks,omitempty"`
	Extra   json.RawMessage `json:"extra,omitempty"`
}

// NewManifestID returns a fresh, time-sortable backup id.
func NewManifestID(t time.Time) string {
	var rnd [3]byte
	rand.Read(rnd[:])
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(rnd[:])
}

// CommitManifest writes m's references and then m itself, the commit point.
func (r *Repository) CommitManifest(ctx context.Context, m *Manifest) error {
	if m.ID == "" || strings.ContainsAny(m.ID, "/.") {
		return fmt.Errorf("commit manifest: bad id %q", m.ID)
	}
	m.Version = ManifestVersion
	seen := make(map[ChunkID]struct{})
	var ids []indexEntry
	for _, f := range m.Files {
		for _, c := range f.Chunks {
			if _, ok := seen[c.ID]; !ok {
				seen[c.ID] = struct{}{}
				ids = append(ids, indexEntry{id: c.ID, plain: c.Size})
			}
		}
	}
	if _, err := r.Put(ctx, refsPrefix+m.ID, KindRefs, bytes.NewReader(marshalRefs(ids))); err != nil {
		return fmt.Errorf("commit manifest %s: %w", m.ID, err)
	}
	if err := r.writeSummary(ctx, m); err != nil {
		return fmt.Errorf("commit manifest %s: %w", m.ID, err)
	}
	b, err := jsonMarshal(m)
	if err != nil {
		return err
	}
	if _, err := r.Put(ctx, manifestPrefix+m.ID, KindManifest, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("commit manifest %s: %w", m.ID, err)
	}
	return nil
}

// ReadManifest reads a committed backup's manifest.
func (r *Repository) ReadManifest(ctx context.Context, id string) (*Manifest, error) {
	b, err := r.ReadAll(ctx, manifestPrefix+id, KindManifest)
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w: %v", id, ErrCorrupt, err)
	}
	if m.Version != ManifestVersion {
		return nil, fmt.Errorf("manifest %s: %w: version %d", id, ErrUnsupported, m.Version)
	}
	if m.ID != id {
		return nil, fmt.Errorf("manifest %s: %w: it names itself %q", id, ErrCorrupt, m.ID)
	}
	return &m, nil
}

// ListManifests returns the ids of committed backups, oldest first.
func (r *Repository) ListManifests(ctx context.Context) ([]string, error) {
	var ids []string
	err := r.store.List(ctx, manifestPrefix, "", func(o ObjectInfo) error {
		ids = append(ids, strings.TrimPrefix(o.Name, manifestPrefix))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	sort.Strings(ids)
	return ids, nil
}

// ReferencedChunks returns the union of chunks referenced by the given
// backups, read from their unencrypted refs objects.
func (r *Repository) ReferencedChunks(ctx context.Context, ids []string) (map[ChunkID]struct{}, error) {
	refs := make(map[ChunkID]struct{})
	for _, id := range ids {
		err := r.readIDs(ctx, refsPrefix+id, KindRefs, refs)
		if errors.Is(err, ErrNotExist) {
			// Nothing can tell, without the key, which chunks the backup
			// needs: deleting anything could destroy it.
			return nil, fmt.Errorf("%w: backup %s has lost its refs object %s%s, which lists the chunks it needs; nothing is deleted until it is back (`tidemark verify --repair`, with the key, writes it again from the manifest)",
				ErrCorrupt, id, refsPrefix, id)
		}
		if err != nil {
			return nil, fmt.Errorf("references of backup %s: %w", id, err)
		}
	}
	return refs, nil
}

// UnreferencedChunks lists stored chunks that none of the committed backups
// reference. Retention deletes these only under the repository lock, since
// a backup in progress references chunks before its manifest exists.
func (r *Repository) UnreferencedChunks(ctx context.Context) ([]ChunkID, error) {
	ids, err := r.ListManifests(ctx)
	if err != nil {
		return nil, err
	}
	refs, err := r.ReferencedChunks(ctx, ids)
	if err != nil {
		return nil, err
	}
	var out []ChunkID
	if r.cfg.Version != 1 {
		idx, err := r.loadChunkIndex(ctx)
		if err != nil {
			return nil, err
		}
		for id := range idx {
			if _, ok := refs[id]; !ok {
				out = append(out, id)
			}
		}
		return out, nil
	}
	err = r.store.List(ctx, "chunks/", "", func(o ObjectInfo) error {
		id, err := ParseChunkID(o.Name[strings.LastIndexByte(o.Name, '/')+1:])
		if err != nil {
			return fmt.Errorf("unexpected object %s among chunks", o.Name)
		}
		if _, ok := refs[id]; !ok {
			out = append(out, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list chunks: %w", err)
	}
	return out, nil
}

// StoredSize sums the sizes of all objects under prefix ("" for all).
func (r *Repository) StoredSize(ctx context.Context, prefix string) (objects int64, bytes int64, err error) {
	err = r.store.List(ctx, prefix, "", func(o ObjectInfo) error {
		objects++
		bytes += o.Size
		return nil
	})
	return objects, bytes, err
}

// RestoreFile writes a backed-up file's content to dst.
func (r *Repository) RestoreFile(ctx context.Context, f FileEntry, dst io.Writer, jobs int) error {
	if err := r.ReadChunks(ctx, f.Chunks, dst, jobs); err != nil {
		return fmt.Errorf("restore %s: %w", f.Path, err)
	}
	return nil
}
