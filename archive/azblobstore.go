package archive

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
)

// Block blob upload parameters: memory use of one Put is bounded by
// azBlockSize × azBlocksInFlight, whatever the object's size. Objects under
// azSingleShot go up in one Put Blob request from a small buffer.
const (
	azBlockSize      = 8 << 20 // × 50,000 blocks: objects up to ~390 GiB
	azBlocksInFlight = 4
	azSingleShot     = 1 << 20
)

// azPutTokenKey is the metadata name of the per-Put token (see putTokenKey;
// Azure metadata names must be C# identifiers, so no dash).
const azPutTokenKey = "tidemarkput"

// AzureStore keeps objects in an Azure Blob Storage container under a prefix.
//
// Write-once relies on If-None-Match: * on Put Blob and Put Block List: the
// service commits the blob only if none exists, atomically, and refuses with
// 409 BlobAlreadyExists or 412 ConditionNotMet otherwise. Staged blocks that
// are never committed stay invisible and are discarded by the service.
type AzureStore struct {
	client   *container.Client
	prefix   string // "" or ends with "/"
	desc     string
	pageSize int32 // listing page size; 0 = the service's default (5000)
}

// Location implements Store.
func (s *AzureStore) Location() string { return s.desc }

func (s *AzureStore) blob(name string) (*blockblob.Client, error) {
	if !validName(name) {
		return nil, fmt.Errorf("invalid object name %q", name)
	}
	return s.client.NewBlockBlobClient(s.prefix + name), nil
}

// Put implements Store.
func (s *AzureStore) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	bb, err := s.blob(name)
	if err != nil {
		return fmt.Errorf("azblob put: %w", err)
	}
	token := randomToken()
	src := &readErrReader{r: ctxReader{ctx, r}}
	err = s.put(ctx, bb, src, token)
	switch {
	case err == nil:
		return nil
	case src.err != nil:
		return fmt.Errorf("azblob put %s: read object data: %w", name, src.err)
	case errors.Is(err, ErrExist) && s.ownedBy(bb, token):
		return nil
	}
	return fmt.Errorf("azblob put %s: %w", name, err)
}

func (s *AzureStore) put(ctx context.Context, bb *blockblob.Client, r io.Reader, token string) error {
	cond := &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: new(azcore.ETagAny)}}
	meta := map[string]*string{azPutTokenKey: &token}
	head := make([]byte, azSingleShot)
	n, err := io.ReadFull(r, head)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		_, err = bb.Upload(ctx, streaming.NopCloser(bytes.NewReader(head[:n])),
			&blockblob.UploadOptions{AccessConditions: cond, Metadata: meta})
		err = azClassify(err)
		if errors.Is(err, ErrExist) {
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
		BlockSize: azBlockSize, Concurrency: azBlocksInFlight, AccessConditions: cond, Metadata: meta})
	if bloberror.HasCode(err, bloberror.InvalidBlockList) {
		if _, serr := bb.GetProperties(ctx, nil); serr == nil {
			return fmt.Errorf("%w: %w", ErrExist, err)
		}
	}
	return azClassify(err)
}

// commitOne writes data as a single staged block committed under cond.
func (s *AzureStore) commitOne(ctx context.Context, bb *blockblob.Client, data []byte, cond *blob.AccessConditions, meta map[string]*string) error {
	// All block IDs of one blob must have one length, and the uncommitted
	// blocks it may still hold come from UploadStream, whose IDs are 64
	// bytes: use that length too.
	var raw [64]byte
	rand.Read(raw[:])
	id := base64.StdEncoding.EncodeToString(raw[:])
	if _, err := bb.StageBlock(ctx, id, streaming.NopCloser(bytes.NewReader(data)), nil); err != nil {
		return azClassify(err)
	}
	_, err := bb.CommitBlockList(ctx, []string{id}, &blockblob.CommitBlockListOptions{AccessConditions: cond, Metadata: meta})
	return azClassify(err)
}

// ownedBy reports whether the blob exists and was written by the Put holding token.
func (s *AzureStore) ownedBy(bb *blockblob.Client, token string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	props, err := bb.GetProperties(ctx, nil)
	if err != nil {
		return false
	}
	for k, v := range props.Metadata {
		if strings.EqualFold(k, azPutTokenKey) && v != nil && *v == token {
			return true
		}
	}
	return false
}

// Get implements Store. The body resumes a download that breaks mid-way
// from where it stopped, pinned to the same blob version by its ETag.
func (s *AzureStore) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	bb, err := s.blob(name)
	if err != nil {
		return nil, fmt.Errorf("azblob get: %w", err)
	}
	if length == 0 {
		return emptyRead(ctx, s, name, off)
	}
	rng := blob.HTTPRange{Offset: off}
	if length > 0 {
		rng.Count = length
	}
	resp, err := bb.DownloadStream(ctx, &blob.DownloadStreamOptions{Range: rng})
	if err != nil {
		if bloberror.HasCode(err, bloberror.InvalidRange) {
			if rc, err := emptyRead(ctx, s, name, off); err == nil {
				return rc, nil
			}
		}
		return nil, fmt.Errorf("azblob get %s: %w", name, azClassify(err))
	}
	return resp.NewRetryReader(ctx, &blob.RetryReaderOptions{MaxRetries: 5}), nil
}

// Stat implements Store.
func (s *AzureStore) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	bb, err := s.blob(name)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("azblob stat: %w", err)
	}
	props, err := bb.GetProperties(ctx, nil)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("azblob stat %s: %w", name, azClassify(err))
	}
	info := ObjectInfo{Name: name}
	if props.ContentLength != nil {
		info.Size = *props.ContentLength
	}
	if props.LastModified != nil {
		info.ModTime = *props.LastModified
	}
	return info, nil
}

// Delete implements Store.
func (s *AzureStore) Delete(ctx context.Context, name string) error {
	bb, err := s.blob(name)
	if err != nil {
		return fmt.Errorf("azblob delete: %w", err)
	}
	if _, err := bb.Delete(ctx, nil); err != nil {
		if err = azClassify(err); !errors.Is(err, ErrNotExist) {
			return fmt.Errorf("azblob delete %s: %w", name, err)
		}
	}
	return nil
}

// List implements Store. Azure lists blob names in lexical order; StartFrom
// is inclusive (and a server that ignores it still lists from the start), so
// names up to startAfter are skipped here.
func (s *AzureStore) List(ctx context.Context, prefix, startAfter string, fn func(ObjectInfo) error) error {
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
			return fmt.Errorf("azblob list %q: %w", prefix, azClassify(err))
		}
		for _, b := range page.Segment.BlobItems {
			if b.Name == nil {
				continue
			}
			name := strings.TrimPrefix(*b.Name, s.prefix)
			if name <= startAfter || !validName(name) || isFolder(b.Metadata) {
				continue
			}
			info := ObjectInfo{Name: name}
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

// azClassify maps Azure errors onto the Store contract's errors, keeping the
// original in the chain.
func azClassify(err error) error {
	if err == nil {
		return nil
	}
	if bloberror.HasCode(err, bloberror.BlobNotFound) {
		return fmt.Errorf("%w: %w", ErrNotExist, err)
	}
	if bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet) {
		return fmt.Errorf("%w: %w", ErrExist, err)
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		switch re.StatusCode {
		case http.StatusPreconditionFailed:
			return fmt.Errorf("%w: %w", ErrExist, err)
		case http.StatusNotFound:
			if re.ErrorCode == "" { // HEAD responses carry no error body
				return fmt.Errorf("%w: %w", ErrNotExist, err)
			}
		}
	}
	return err
}
