package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

const sourceName = "source"

// Source identifies the one database cluster a repository holds: written
// once by the first stream or backup, and checked by every later one so two
// clusters' histories can never mix.
type Source struct {
	Engine    string            `json:"engine"`     // postgres, mysql, mongodb
	ClusterID string            `json:"cluster_id"` // PostgreSQL system identifier, MySQL server UUID, …
	Details   map[string]string `json:"details,omitempty"`
}

// ErrSourceMismatch: the repository belongs to another cluster.
var ErrSourceMismatch = errors.New("repository belongs to another database cluster")

// BindSource records src as the repository's source, or checks that it is
// the one already recorded. It returns the recorded source.
func (r *Repository) BindSource(ctx context.Context, src Source) (*Source, error) {
	cur, err := r.Source(ctx)
	if errors.Is(err, ErrNotExist) {
		b, err := jsonMarshal(src)
		if err != nil {
			return nil, err
		}
		_, err = r.Put(ctx, sourceName, KindSource, bytes.NewReader(b))
		if errors.Is(err, ErrExist) {
			return r.BindSource(ctx, src) // another process bound it first: check theirs
		}
		if err != nil {
			return nil, fmt.Errorf("bind repository to %s %s: %w", src.Engine, src.ClusterID, err)
		}
		return &src, nil
	}
	if err != nil {
		return nil, err
	}
	if cur.Engine != src.Engine || cur.ClusterID != src.ClusterID {
		return nil, fmt.Errorf("%w: it holds %s cluster %s, the source is %s cluster %s",
			ErrSourceMismatch, cur.Engine, cur.ClusterID, src.Engine, src.ClusterID)
	}
	return cur, nil
}

// Source returns the recorded source; ErrNotExist before the first stream
// or backup.
func (r *Repository) Source(ctx context.Context) (*Source, error) {
	b, err := r.ReadAll(ctx, sourceName, KindSource)
	if err != nil {
		return nil, err
	}
	var s Source
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("source: %w: %v", ErrCorrupt, err)
	}
	return &s, nil
}
