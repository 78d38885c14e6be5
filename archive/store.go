// Package archive is Tidemark's repository: the stores objects live in, the
// object format that seals them, the deduplicated chunk storage for base
// backups, and the repository config. Everything engine-specific lives in the
// engine packages; everything here is shared by all of them.
package archive

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Store is the storage contract every backend (file, S3, ...) fulfils.
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

// ctxReader fails reads once ctx is done, so a streaming Put stops promptly.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// readErrReader remembers the source's own error, so a failed upload can say
// whether the data or the service broke.
type readErrReader struct {
	r   io.Reader
	err error
}

func (e *readErrReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// emptyRead serves the reads object services answer awkwardly: zero bytes,
// or a range starting exactly at the end (refused with 416 by S3, GCS and
// Azure), both empty reads by the contract as long as name exists and off is
// within it.
func emptyRead(ctx context.Context, s Store, name string, off int64) (io.ReadCloser, error) {
	info, err := s.Stat(ctx, name)
	if err != nil {
		return nil, err
	}
	if off > info.Size {
		return nil, fmt.Errorf("read %s at %d: beyond its end (%d bytes)", name, off, info.Size)
	}
	return io.NopCloser(strings.NewReader("")), nil
}

// randomToken is a unique tag for one write, e.g. to recognise a retried
// conditional create that finds its own first attempt.
func randomToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
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

// validName reports whether name obeys the naming rules of the Store contract.
func validName(name string) bool {
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
