// Package azblob is the store for Azure Blob Storage, write-once through
// If-None-Match: * on the requests that commit a blob.
package azblob

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/internal/storeutil"
)

// Block blob upload parameters: memory use of one Put is bounded by
// blockSize × blocksInFlight, whatever the object's size. Objects under
// singleShot go up in one Put Blob request from a small buffer.
const (
	blockSize      = 8 << 20 // × 50,000 blocks: objects up to ~390 GiB
	blocksInFlight = 4
	singleShot     = 1 << 20
)

// putTokenKey is the metadata name of a random token per Put. When a retried
// conditional create is refused because its own first attempt already
// committed (the response was lost), the token proves the blob is ours, so
// the Put succeeds instead of reporting a false archive.ErrExist. Azure
// metadata names must be C# identifiers, so no dash.
const putTokenKey = "tidemarkput"

// Store keeps objects in an Azure Blob Storage container under a prefix.
//
// Write-once relies on If-None-Match: * on Put Blob and Put Block List: the
// service commits the blob only if none exists, atomically, and refuses with
// 409 BlobAlreadyExists or 412 ConditionNotMet otherwise. Staged blocks that
// are never committed stay invisible and are discarded by the service.
type Store struct {
	client   *container.Client
	prefix   string // "" or ends with "/"
	desc     string
	pageSize int32 // listing page size; 0 = the service's default (5000)
}

var _ archive.Store = (*Store)(nil)

// Location implements archive.Store.
func (s *Store) Location() string { return s.desc }

func (s *Store) blob(name string) (*blockblob.Client, error) {
	if !archive.ValidName(name) {
		return nil, fmt.Errorf("invalid object name %q", name)
	}
	return s.client.NewBlockBlobClient(s.prefix + name), nil
}

// Put implements archive.Store.
func (s *Store) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	bb, err := s.blob(name)
	if err != nil {
		return fmt.Errorf("azblob put: %w", err)
	}
	token := storeutil.PutToken(ctx)
	src := &storeutil.ReadErrReader{R: storeutil.ContextReader{Ctx: ctx, R: r}}
	err = s.put(ctx, bb, src, token)
	switch {
	case err == nil:
		return nil
	case src.Err != nil:
		return fmt.Errorf("azblob put %s: read object data: %w", name, src.Err)
	case errors.Is(err, archive.ErrExist) && s.ownedBy(bb, token):
		return nil
	}
	return fmt.Errorf("azblob put %s: %w", name, err)
}

func (s *Store) put(ctx context.Context, bb *blockblob.Client, r io.Reader, token string) error {
	cond := &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: new(azcore.ETagAny)}}
	meta := map[string]*string{putTokenKey: &token}
	head := make([]byte, singleShot)
	n, err := io.ReadFull(r, head)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		_, err = bb.Upload(ctx, streaming.NopCloser(bytes.NewReader(head[:n])),
			&blockblob.UploadOptions{AccessConditions: cond, Metadata: meta})
		err = classify(err)
		if errors.Is(err, archive.ErrExist) {
			if _, serr := bb.GetProperties(ctx, nil); bloberror.HasCode(serr, bloberror.BlobNotFound) {
				// Refused, yet nothing is committed: uncommitted blocks of an
				// earlier failed upload count as a blob for Put Blob on some
				// servers (Azurite). Put Block List's condition sees only
				// committed blobs, so commit the data as one block.
				return s.commitOne(ctx, bb, head[:n], cond, meta)
			}
		}
		return err
	case err != nil:
		return err
	}
	// Blocks are staged under random IDs and committed by one conditional
	// Put Block List. Racing writers of one name discard each other's
	// uncommitted blocks, so a loser may see InvalidBlockList instead of a
	// condition failure: it lost all the same when the blob now exists.
	_, err = bb.UploadStream(ctx, io.MultiReader(bytes.NewReader(head), r), &blockblob.UploadStreamOptions{
		BlockSize: blockSize, Concurrency: blocksInFlight, AccessConditions: cond, Metadata: meta})
	if bloberror.HasCode(err, bloberror.InvalidBlockList) {
		if _, serr := bb.GetProperties(ctx, nil); serr == nil {
			return fmt.Errorf("%w: %w", archive.ErrExist, err)
		}
	}
	return classify(err)
}

// commitOne writes data as a single staged block committed under cond.
func (s *Store) commitOne(ctx context.Context, bb *blockblob.Client, data []byte, cond *blob.AccessConditions, meta map[string]*string) error {
	// All block IDs of one blob must have one length, and the uncommitted
	// blocks it may still hold come from UploadStream, whose IDs are 64
	// bytes: use that length too.
	var raw [64]byte
	rand.Read(raw[:])
	id := base64.StdEncoding.EncodeToString(raw[:])
	if _, err := bb.StageBlock(ctx, id, streaming.NopCloser(bytes.NewReader(data)), nil); err != nil {
		return classify(err)
	}
	_, err := bb.CommitBlockList(ctx, []string{id}, &blockblob.CommitBlockListOptions{AccessConditions: cond, Metadata: meta})
	return classify(err)
}

// ownedBy reports whether the blob exists and was written by the Put holding token.
func (s *Store) ownedBy(bb *blockblob.Client, token string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	props, err := bb.GetProperties(ctx, nil)
	if err != nil {
		return false
	}
	for k, v := range props.Metadata {
		if strings.EqualFold(k, putTokenKey) && v != nil && *v == token {
			return true
		}
	}
	return false
}

// Get implements archive.Store. The body resumes a download that breaks
// mid-way from where it stopped, pinned to the same blob version by its ETag.
func (s *Store) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	bb, err := s.blob(name)
	if err != nil {
		return nil, fmt.Errorf("azblob get: %w", err)
	}
	if length == 0 {
		return storeutil.EmptyRead(ctx, s, name, off)
	}
	rng := blob.HTTPRange{Offset: off}
	if length > 0 {
		rng.Count = length
	}
	resp, err := bb.DownloadStream(ctx, &blob.DownloadStreamOptions{Range: rng})
	if err != nil {
		if bloberror.HasCode(err, bloberror.InvalidRange) {
			if rc, err := storeutil.EmptyRead(ctx, s, name, off); err == nil {
				return rc, nil
			}
		}
		return nil, fmt.Errorf("azblob get %s: %w", name, classify(err))
	}
	return resp.NewRetryReader(ctx, &blob.RetryReaderOptions{MaxRetries: 5}), nil
}

// Stat implements archive.Store.
func (s *Store) Stat(ctx context.Context, name string) (archive.ObjectInfo, error) {
	bb, err := s.blob(name)
	if err != nil {
		return archive.ObjectInfo{}, fmt.Errorf("azblob stat: %w", err)
	}
	props, err := bb.GetProperties(ctx, nil)
	if err != nil {
		return archive.ObjectInfo{}, fmt.Errorf("azblob stat %s: %w", name, classify(err))
	}
	info := archive.ObjectInfo{Name: name}
	if props.ContentLength != nil {
		info.Size = *props.ContentLength
	}
	if props.LastModified != nil {
		info.ModTime = *props.LastModified
	}
	return info, nil
}

// Delete implements archive.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	bb, err := s.blob(name)
	if err != nil {
		return fmt.Errorf("azblob delete: %w", err)
	}
	if _, err := bb.Delete(ctx, nil); err != nil {
		if err = classify(err); !errors.Is(err, archive.ErrNotExist) {
			return fmt.Errorf("azblob delete %s: %w", name, err)
		}
	}
	return nil
}

// List implements archive.Store. Azure lists blob names in lexical order;
// StartFrom is inclusive (and a server that ignores it still lists from the
// start), so names up to startAfter are skipped here.
func (s *Store) List(ctx context.Context, prefix, startAfter string, fn func(archive.ObjectInfo) error) error {
	// Metadata marks the directory placeholders of accounts with a
	// hierarchical namespace (Data Lake Gen2), which are not objects.
	opts := &container.ListBlobsFlatOptions{Prefix: new(s.prefix + prefix), Include: container.ListBlobsInclude{Metadata: true}}
	if startAfter != "" {
		opts.StartFrom = new(s.prefix + startAfter)
	}
	if s.pageSize > 0 {
		opts.MaxResults = &s.pageSize
	}
	pager := s.client.NewListBlobsFlatPager(opts)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("azblob list %q: %w", prefix, classify(err))
		}
		for _, b := range page.Segment.BlobItems {
			if b.Name == nil {
				continue
			}
			name := strings.TrimPrefix(*b.Name, s.prefix)
			if name <= startAfter || !archive.ValidName(name) || isFolder(b.Metadata) {
				continue
			}
			info := archive.ObjectInfo{Name: name}
			if p := b.Properties; p != nil {
				if p.ContentLength != nil {
					info.Size = *p.ContentLength
				}
				if p.LastModified != nil {
					info.ModTime = *p.LastModified
				}
			}
			if err := fn(info); err != nil {
				return err
			}
		}
	}
	return nil
}

// isFolder reports a hierarchical-namespace directory (hdi_isfolder=true).
func isFolder(meta map[string]*string) bool {
	for k, v := range meta {
		if strings.EqualFold(k, "hdi_isfolder") && v != nil && strings.EqualFold(*v, "true") {
			return true
		}
	}
	return false
}

// classify maps Azure errors onto the Store contract's errors, keeping the
// original in the chain.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if bloberror.HasCode(err, bloberror.BlobNotFound) {
		return fmt.Errorf("%w: %w", archive.ErrNotExist, err)
	}
	if bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet) {
		return fmt.Errorf("%w: %w", archive.ErrExist, err)
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		switch re.StatusCode {
		case http.StatusPreconditionFailed:
			return fmt.Errorf("%w: %w", archive.ErrExist, err)
		case http.StatusNotFound:
			if re.ErrorCode == "" { // HEAD responses carry no error body
				return fmt.Errorf("%w: %w", archive.ErrNotExist, err)
			}
		case http.StatusTooManyRequests, http.StatusRequestTimeout:
			return fmt.Errorf("%w: %w", archive.ErrUnavailable, err)
		}
		if re.StatusCode >= 500 {
			return fmt.Errorf("%w: %w", archive.ErrUnavailable, err)
		}
	}
	return err
}
