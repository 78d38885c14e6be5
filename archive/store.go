// Package archive is Tidemark's repository: the contract of the stores
// objects live in (the stores themselves are under archive/store), the
// object format that seals them, the deduplicated chunk storage for base
// backups, and the repository config. Everything engine-specific lives in the
// engine packages; everything here is shared by all of them.
package archive

import (
	"context"
	"errors"
	"io"
	"time"
)

// Store is the storage contract every backend (file, S3, ...) fulfils. The
// backends live in packages of their own under archive/store, so that code
// which only needs a Store links no cloud SDK; archive/store/all opens one by
// repository URL.
//
// Names are slash-separated relative paths ("wal/00000001/...") with no
// leading slash, no empty elements and no element starting with "." (those
// are reserved for a backend's temporary files). The semantics are deliberately
// narrow so every backend can honour them:
//
//   - Put is write-once. If name already exists it returns an error wrapping
//     ErrExist and leaves the existing object untouched. A Put that fails
//     leaves nothing visible under name. Put streams from r: it never needs the
//     whole object in memory. size is the length of r when known, else -1.
//   - Get opens name for reading from offset off; length < 0 means to the end.
//     A missing object is ErrNotExist.
//   - List calls fn for every object whose name starts with prefix, in
//     lexical order of names, starting after startAfter when it is non-empty.
//     Returning an error from fn stops the listing and is returned.
//   - Stat returns an object's size; ErrNotExist when missing.
//   - Delete removes name; deleting a missing object is not an error.
type Store interface {
	Put(ctx context.Context, name string, r io.Reader, size int64) error
	Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error)
	List(ctx context.Context, prefix, startAfter string, fn func(ObjectInfo) error) error
	Stat(ctx context.Context, name string) (ObjectInfo, error)
	Delete(ctx context.Context, name string) error
	// Location is a human-readable description of where the store points,
	// without credentials, for messages and logs.
	Location() string
}

// TempFileStore is implemented by stores that keep a write in progress
// under a name of their own until it completes (the file store's
// temporary files beside the final name). A writer killed mid-write
// leaves that behind, and List does not show it: verify reports such
// files and expire removes them once they are old.
type TempFileStore interface {
	// TempFiles calls fn for every temporary file, named by its path
	// relative to the store's root.
	TempFiles(ctx context.Context, fn func(ObjectInfo) error) error
	// DeleteTempFile removes one.
	DeleteTempFile(ctx context.Context, name string) error
}

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Name    string
	Size    int64
	ModTime time.Time // informational only: event times live in object headers
}

// Contract errors. Backends wrap them so errors.Is works across every store.
var (
	ErrNotExist = errors.New("object does not exist")
	ErrExist    = errors.New("object already exists")
)

// ErrUnavailable marks a store's answer that may change if the request is
// repeated (HTTP 5xx, 429, "slow down"): stores wrap such errors in it, and
// the retrying decorator (archive/store/retry) repeats them.
var ErrUnavailable = errors.New("store temporarily unavailable")

// ErrBadURL marks a repository URL that cannot name a store. Every store's
// opener wraps it, so the CLI answers them all with one exit code.
var ErrBadURL = errors.New("bad repository URL")

// ValidName reports whether name obeys the naming rules of the Store
// contract. Stores refuse other names, and skip them when listing (they are
// not objects of ours, e.g. directory markers).
func ValidName(name string) bool {
	if name == "" || name[0] == '/' || name[len(name)-1] == '/' {
		return false
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '/' {
			elem := name[start:i]
			if elem == "" || elem[0] == '.' {
				return false
			}
			start = i + 1
			continue
		}
		if name[i] == 0 || name[i] == '\\' {
			return false
		}
	}
	return true
}
