package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The catalog holds one unencrypted summary per backup, written just before
// its manifest, so that retention, status and the agent can reason about
// backups on a host that holds only public keys. It carries times,
// positions and sizes, never file names or data.
const catalogPrefix = "catalog/"

// BackupSummary is what the catalog records of one backup.
type BackupSummary struct {
	ID       string    `json:"id"`
	Engine   string    `json:"engine"`
	Type     string    `json:"type"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Start and Stop are the engine's stream positions the backup is
	// consistent between (PostgreSQL LSNs, binlog or oplog positions):
	// a restore needs the stream from Start on.
	Start     string `json:"start,omitempty"`
	Stop      string `json:"stop,omitempty"`
	Stream    string `json:"stream,omitempty"` // the archive stream it pairs with, for binlog/oplog
	Logical   int64  `json:"logical_bytes"`
	NewStored int64  `json:"new_stored_bytes"`
	// NewPlain is the plaintext of the chunks the backup added (0 in
	// entries written before it was recorded): with NewStored, the
	// compression it achieved.
	NewPlain int64 `json:"new_plain_bytes,omitempty"`
	Files    int   `json:"files"`
	// DependsOn: the backups a restore of this one also reads (Manifest.DependsOn).
	DependsOn []string `json:"depends_on,omitempty"`
}

// CompressionRatio is the plaintext per stored byte of the chunks the
// backup added, or 0 when unknown (it added none, or its entry predates
// new_plain_bytes).
func (s BackupSummary) CompressionRatio() float64 { return ratio(s.NewPlain, s.NewStored) }

// SummaryOf is the catalog entry of a manifest.
func SummaryOf(m *Manifest) BackupSummary {
	return BackupSummary{ID: m.ID, Engine: m.Engine, Type: m.Type, Started: m.Started, Finished: m.Finished,
		Start: m.Start, Stop: m.Stop, Stream: m.Stream, Logical: m.Stats.Logical, NewStored: m.Stats.NewStored,
		NewPlain: m.Stats.NewPlain, Files: len(m.Files), DependsOn: m.DependsOn}
}

func (r *Repository) writeSummary(ctx context.Context, m *Manifest) error {
	b, err := jsonMarshal(SummaryOf(m))
	if err != nil {
		return err
	}
	if _, err := r.Put(ctx, catalogPrefix+m.ID, KindCatalog, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("write catalog entry %s: %w", m.ID, err)
	}
	return nil
}

// Backups returns a summary of every committed backup, oldest first. A
// backup committed before the catalog existed is summarized from its
// manifest, which needs the key.
func (r *Repository) Backups(ctx context.Context) ([]BackupSummary, error) {
	ids, err := r.ListManifests(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]BackupSummary, 0, len(ids))
	for _, id := range ids {
		b, err := r.ReadAll(ctx, catalogPrefix+id, KindCatalog)
		var s BackupSummary
		if err == nil {
			if jerr := json.Unmarshal(b, &s); jerr != nil || s.ID != id {
				err = fmt.Errorf("catalog entry %s: %w", id, ErrCorrupt)
			}
		}
		if errors.Is(err, ErrNotExist) || errors.Is(err, ErrCorrupt) {
			// Predates the catalog, or its entry was lost or damaged: the
			// manifest says the same, with the key.
			if !r.CanRead() {
				if errors.Is(err, ErrCorrupt) {
					return nil, fmt.Errorf("backup %s: its catalog entry does not read back, and its summary needs the key (`tidemark verify --repair`, with the key, writes it again): %w", id, err)
				}
				return nil, fmt.Errorf("backup %s predates the catalog; its summary needs the key: %w", id, ErrNoIdentity)
			}
			m, err := r.ReadManifest(ctx, id)
			if err != nil {
				return nil, err
			}
			out = append(out, SummaryOf(m))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read catalog entry %s: %w", id, err)
		}
		out = append(out, s)
	}
	return out, nil
}
