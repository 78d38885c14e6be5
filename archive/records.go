package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// A record is a small state kept as JSON objects <prefix><key>/<unixnano
// 016x>, each write a new object: the newest of a key is its state
// (heartbeats, running operations).

// newestRecords reads the newest record of every key under prefix, in key
// order. A record deleted while read (replaced, ended) is skipped; one
// that does not read back, or has another version than want, becomes what
// unreadable makes of it: never silently dropped.
func newestRecords[T any](ctx context.Context, r *Repository, prefix string, kind Kind, want int, version func(T) int,
	unreadable func(key string, o ObjectInfo, err error) T) ([]T, error) {
	newest := map[string]ObjectInfo{}
	var keys []string
	if err := r.store.List(ctx, prefix, "", func(o ObjectInfo) error {
		key, _, ok := strings.Cut(strings.TrimPrefix(o.Name, prefix), "/")
		if !ok {
			return nil
		}
		if _, seen := newest[key]; !seen {
			keys = append(keys, key)
		}
		newest[key] = o // listed in order: the last is the newest
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	out := make([]T, 0, len(keys))
	for _, key := range keys {
		o := newest[key]
		var v T
		b, err := r.ReadAll(ctx, o.Name, kind)
		if err == nil {
			err = json.Unmarshal(b, &v)
		}
		if err == nil && version(v) != want {
			err = fmt.Errorf("%w: %s version %d", ErrUnsupported, kind, version(v))
		}
		if errors.Is(err, ErrNotExist) {
			continue
		}
		if err != nil {
			v = unreadable(key, o, fmt.Errorf("%s %s unreadable: %w", kind, o.Name, err))
		}
		out = append(out, v)
	}
	return out, nil
}

// putRecord writes v as key's newest record, <prefix><key>/<at unixnano
// 016x>, and deletes the older ones. When the store refuses the write (a
// full disk), it deletes the older ones first and tries once more, so the
// newest state can still land in the space they leave.
func (r *Repository) putRecord(ctx context.Context, prefix, key string, at time.Time, kind Kind, v any) error {
	b, err := jsonMarshal(v)
	if err != nil {
		return err
	}
	dir := prefix + key + "/"
	name := fmt.Sprintf("%s%016x", dir, at.UnixNano())
	var older []string
	if err := r.store.List(ctx, dir, "", func(o ObjectInfo) error {
		if o.Name < name {
			older = append(older, o.Name)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	deleteOlder := func() {
		for _, o := range older {
			_ = r.store.Delete(ctx, o) // best effort: history, not state
		}
	}
	if _, err := r.Put(ctx, name, kind, bytes.NewReader(b)); err != nil {
		if errors.Is(err, ErrExist) || len(older) == 0 || ctx.Err() != nil {
			return err
		}
		deleteOlder()
		_, err = r.Put(ctx, name, kind, bytes.NewReader(b))
		return err
	}
	deleteOlder()
	return nil
}
