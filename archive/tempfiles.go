package archive

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// TempFileAge is how long a store's temporary file must have been left
// untouched before expire takes it for the leftover of a killed writer: a
// live write touches its file continuously, and no write takes this long
// without writing.
const TempFileAge = time.Hour

// tempFileStore finds the TempFileStore under any decorators (which
// expose what they wrap with Unwrap).
func tempFileStore(s Store) (TempFileStore, bool) {
	for {
		if t, ok := s.(TempFileStore); ok {
			return t, true
		}
		u, ok := s.(interface{ Unwrap() Store })
		if !ok {
			return nil, false
		}
		s = u.Unwrap()
	}
}

// TempFiles lists the store's temporary files of unfinished writes (none
// for stores that keep no such files).
func (r *Repository) TempFiles(ctx context.Context, fn func(ObjectInfo) error) error {
	t, ok := tempFileStore(r.store)
	if !ok {
		return nil
	}
	if err := t.TempFiles(ctx, fn); err != nil {
		return fmt.Errorf("list temporary files: %w", err)
	}
	return nil
}

// deleteTempFiles removes the temporary files untouched since before
// now-TempFileAge (in a dry run it only counts them).
func (r *Repository) deleteTempFiles(ctx context.Context, now time.Time, dryRun bool) (Trimmed, error) {
	var t Trimmed
	ts, ok := tempFileStore(r.store)
	if !ok {
		return t, nil
	}
	var old []ObjectInfo
	if err := ts.TempFiles(ctx, func(o ObjectInfo) error {
		if o.ModTime.Before(now.Add(-TempFileAge)) {
			old = append(old, o)
		}
		return nil
	}); err != nil {
		return t, fmt.Errorf("expire: list temporary files: %w", err)
	}
	for _, o := range old {
		t.Objects++
		t.Bytes += o.Size
		if dryRun {
			continue
		}
		if err := ts.DeleteTempFile(ctx, o.Name); err != nil && !errors.Is(err, ErrNotExist) {
			return t, fmt.Errorf("expire: delete temporary file %s: %w", o.Name, err)
		}
	}
	return t, nil
}
