// Package gcs is the store for Google Cloud Storage, write-once through
// the ifGenerationMatch=0 precondition.
package gcs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/internal/storeutil"
)

// chunkSize is the resumable-upload chunk: the Writer buffers one chunk
// (to resend it on a transient error), so a Put holds at most this much of
// the object in memory whatever its size. Objects smaller than a chunk go up
// in a single request.
const chunkSize = 8 << 20

// firstRead is the first read of a Put; chunkUnit is the granularity the
// client rounds chunk sizes to.
const (
	firstRead = 1 << 20
	chunkUnit = 256 << 10
)

// putTokenKey is the object metadata key holding a random token per Put. When
// a retried conditional create is refused because its own first attempt
// already landed (the response was lost), the token proves the object is
// ours, so the Put succeeds instead of reporting a false archive.ErrExist.
const putTokenKey = "tidemark-put"

// Store keeps objects in a Google Cloud Storage bucket under a prefix.
//
// Write-once relies on the ifGenerationMatch=0 precondition
// (Conditions{DoesNotExist: true}): the service creates the object only if no
// live generation exists, atomically, and refuses with 412 otherwise.
type Store struct {
	client   *storage.Client
	bucket   *storage.BucketHandle
	prefix   string // "" or ends with "/"
	desc     string
	pageSize int // listing page size; 0 = the service's default (1000)
}

var _ archive.Store = (*Store)(nil)

// Open opens gs://bucket/prefix. Credentials come from Application Default
// Credentials: GOOGLE_APPLICATION_CREDENTIALS naming a service-account key
// file, gcloud's user credentials, or the metadata server on GCP. With
// STORAGE_EMULATOR_HOST set the client talks to that emulator without auth.
func Open(ctx context.Context, u *url.URL) (*Store, error) { return open(ctx, u) }

// open is Open with extra client options (tests inject faults with them).
func open(ctx context.Context, u *url.URL, extra ...option.ClientOption) (*Store, error) {
	if u.Host == "" {
		return nil, fmt.Errorf("%w: gs URL %q: no bucket", archive.ErrBadURL, storeutil.SafeURL(u))
	}
	if u.User != nil || u.RawQuery != "" {
		return nil, fmt.Errorf("%w: gs URL %q: credentials and options come from the environment, not the URL", archive.ErrBadURL, storeutil.SafeURL(u))
	}
	opts := []option.ClientOption{storage.WithJSONReads(), storage.WithDisabledClientMetrics()}
	client, err := storage.NewClient(ctx, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("gs %s: create client (credentials from GOOGLE_APPLICATION_CREDENTIALS or application-default login): %w", u.Host, err)
	}
	// Every call we make is safe to repeat: creates are conditional (and the
	// put token resolves a repeat that finds its own object), reads and lists
	// have no effect, and a name is never re-created after its deletion while
	// a delete of it could still be in flight. So retry everything transient
	// a few times, quickly: long outages are outlasted by the retrying
	// decorator every store is opened in (archive/store/retry).
	client.SetRetry(storage.WithPolicy(storage.RetryAlways),
		storage.WithBackoff(gax.Backoff{Initial: 200 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2}),
		storage.WithMaxAttempts(3))
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	desc := "gs://" + u.Host + "/" + prefix
	if host := os.Getenv("STORAGE_EMULATOR_HOST"); host != "" {
		desc += " (emulator " + host + ")"
	}
	return &Store{client: client, bucket: client.Bucket(u.Host), prefix: prefix, desc: desc}, nil
}

// Location implements archive.Store.
func (s *Store) Location() string { return s.desc }

// Close releases the client's connections.
func (s *Store) Close() error { return s.client.Close() }

func (s *Store) object(name string) (*storage.ObjectHandle, error) {
	if !archive.ValidName(name) {
		return nil, fmt.Errorf("invalid object name %q", name)
	}
	return s.bucket.Object(s.prefix + name), nil
}

// Put implements archive.Store with a conditional, resumable upload. The
// object becomes visible only when the final chunk is committed; a reader
// error or a cancelled context abandons the upload session, which leaves
// nothing.
func (s *Store) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	obj, err := s.object(name)
	if err != nil {
		return fmt.Errorf("gs put: %w", err)
	}
	token := storeutil.PutToken(ctx)
	src := &storeutil.ReadErrReader{R: storeutil.ContextReader{Ctx: ctx, R: r}}
	err = s.put(ctx, obj, src, token)
	switch {
	case err == nil:
		return nil
	case src.Err != nil:
		return fmt.Errorf("gs put %s: read object data: %w", name, src.Err)
	case errors.Is(err, archive.ErrExist) && s.ownedBy(obj, token):
		return nil
	}
	return fmt.Errorf("gs put %s: %w", name, err)
}

func (s *Store) put(ctx context.Context, obj *storage.ObjectHandle, r io.Reader, token string) error {
	// Cancelling the writer's context is how an upload is abandoned.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The Writer allocates a whole chunk up front. Most objects (chunks, WAL
	// parts) are far smaller: when the data ends within a small first read,
	// size the chunk to it, which also makes it a single-request upload.
	head := make([]byte, firstRead)
	n, err := io.ReadFull(r, head)
	chunk := chunkSize
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		chunk = (n/chunkUnit + 1) * chunkUnit // strictly larger: one request
	case err != nil:
		return err
	}
	w := obj.If(storage.Conditions{DoesNotExist: true}).NewWriter(wctx)
	w.ChunkSize = chunk
	w.ForceEmptyContentType = true
	w.ContentType = "application/octet-stream"
	w.Metadata = map[string]string{putTokenKey: token}
	// The client sends the whole object's CRC32C itself, checked by the service.
	if _, err := io.Copy(w, io.MultiReader(bytes.NewReader(head[:n]), r)); err != nil {
		cancel() // abandons the upload: nothing becomes visible
		w.Close()
		return classify(err)
	}
	return classify(w.Close())
}

// ownedBy reports whether obj exists and was written by the Put holding token.
func (s *Store) ownedBy(obj *storage.ObjectHandle, token string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	attrs, err := obj.Attrs(ctx)
	return err == nil && attrs.Metadata[putTokenKey] == token
}

// Get implements archive.Store.
func (s *Store) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	obj, err := s.object(name)
	if err != nil {
		return nil, fmt.Errorf("gs get: %w", err)
	}
	if length == 0 {
		return storeutil.EmptyRead(ctx, s, name, off)
	}
	if length < 0 {
		length = -1
	}
	rd, err := obj.NewRangeReader(ctx, off, length)
	if err != nil {
		err = classify(err)
		if httpStatus(err) == http.StatusRequestedRangeNotSatisfiable {
			if rc, err := storeutil.EmptyRead(ctx, s, name, off); err == nil {
				return rc, nil
			}
		}
		return nil, fmt.Errorf("gs get %s: %w", name, err)
	}
	return rd, nil
}

// Stat implements archive.Store.
func (s *Store) Stat(ctx context.Context, name string) (archive.ObjectInfo, error) {
	obj, err := s.object(name)
	if err != nil {
		return archive.ObjectInfo{}, fmt.Errorf("gs stat: %w", err)
	}
	attrs, err := obj.Attrs(ctx)
	if err != nil {
		return archive.ObjectInfo{}, fmt.Errorf("gs stat %s: %w", name, classify(err))
	}
	return archive.ObjectInfo{Name: name, Size: attrs.Size, ModTime: attrs.Updated}, nil
}

// Delete implements archive.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	obj, err := s.object(name)
	if err != nil {
		return fmt.Errorf("gs delete: %w", err)
	}
	if err := classify(obj.Delete(ctx)); err != nil && !errors.Is(err, archive.ErrNotExist) {
		return fmt.Errorf("gs delete %s: %w", name, err)
	}
	return nil
}

// List implements archive.Store. GCS lists names in lexical (UTF-8 byte)
// order; StartOffset is inclusive, so the start-after name itself is skipped.
func (s *Store) List(ctx context.Context, prefix, startAfter string, fn func(archive.ObjectInfo) error) error {
	q := &storage.Query{Prefix: s.prefix + prefix, Projection: storage.ProjectionNoACL}
	if startAfter != "" {
		q.StartOffset = s.prefix + startAfter
	}
	if err := q.SetAttrSelection([]string{"Name", "Size", "Updated"}); err != nil {
		return fmt.Errorf("gs list %q: %w", prefix, err)
	}
	it := s.bucket.Objects(ctx, q)
	it.PageInfo().MaxSize = s.pageSize
	for {
		attrs, err := it.Next()
		if err == iterator.Done {
			return nil
		}
		if err != nil {
			return fmt.Errorf("gs list %q: %w", prefix, classify(err))
		}
		name := strings.TrimPrefix(attrs.Name, s.prefix)
		if name <= startAfter || !archive.ValidName(name) {
			continue // the start itself, or not ours (e.g. a folder placeholder)
		}
		if err := fn(archive.ObjectInfo{Name: name, Size: attrs.Size, ModTime: attrs.Updated}); err != nil {
			return err
		}
	}
}

// classify maps GCS errors onto the Store contract's errors, keeping the
// original in the chain.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrObjectNotExist):
		return fmt.Errorf("%w: %w", archive.ErrNotExist, err)
	}
	switch httpStatus(err) {
	case http.StatusPreconditionFailed:
		return fmt.Errorf("%w: %w", archive.ErrExist, err)
	case http.StatusNotFound:
		return fmt.Errorf("%w: %w", archive.ErrNotExist, err)
	case http.StatusTooManyRequests, http.StatusRequestTimeout:
		return fmt.Errorf("%w: %w", archive.ErrUnavailable, err)
	}
	if httpStatus(err) >= 500 {
		return fmt.Errorf("%w: %w", archive.ErrUnavailable, err)
	}
	return err
}

func httpStatus(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}
