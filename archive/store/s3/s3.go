// Package s3 is the store for Amazon S3 and S3-compatible servers (MinIO,
// Ceph, ...), write-once through conditional writes.
package s3

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
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/internal/storeutil"
)

// S3 multipart parameters: memory use of one Put is bounded by
// partSize × (partsInFlight + 1), whatever the object's size.
const (
	partSize      = 8 << 20
	partsInFlight = 4
	maxParts      = 10000 // S3's limit: objects up to partSize × 10000 (~78 GiB)
)

// Store keeps objects in an S3 bucket under a prefix.
//
// Write-once relies on conditional writes: PutObject and
// CompleteMultipartUpload carry If-None-Match: *, so S3 (since 2024) and
// MinIO refuse to replace an existing key with 412 Precondition Failed. A
// server that ignores the header would silently break the contract; the
// conformance suite's concurrent-writers test catches such a server.
type Store struct {
	client *awss3.Client
	bucket string
	prefix string // "" or ends with "/"
	desc   string
	bufs   sync.Pool
	// pageSize is the listing page size; 0 = the service's default (1000).
	pageSize int32
}

var _ archive.Store = (*Store)(nil)

// Open opens s3://bucket/prefix with the standard AWS configuration chain
// (environment, shared config and credentials files, instance roles).
// Credentials never come from the URL: one with user info or a query is
// refused, since it would show in process lists and logs.
func Open(ctx context.Context, u *url.URL) (*Store, error) { return open(ctx, u) }

// sdkAttempts bounds the SDK's own retries of one request. Long outages are
// outlasted by the retrying decorator every store is wrapped in
// (archive/store/retry), which also names the store and operation when it
// gives up; the SDK only smooths over single dropped requests.
const sdkAttempts = 3

// open is Open with extra configuration (tests inject faults with it).
func open(ctx context.Context, u *url.URL, extra ...func(*config.LoadOptions) error) (*Store, error) {
	if u.Host == "" {
		return nil, fmt.Errorf("%w: s3 URL %q: no bucket", archive.ErrBadURL, storeutil.SafeURL(u))
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: s3 URL %q: credentials and options come from the environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, …), not the URL",
			archive.ErrBadURL, storeutil.SafeURL(u))
	}
	opts := append([]func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = sdkAttempts
				o.MaxBackoff = 2 * time.Second
				// No client-side retry quota: during an outage it runs dry
				// and fails requests with "retry quota exceeded" long before
				// the service is back.
				o.RateLimiter = ratelimit.None
			})
		}),
		// The SDK logs to stderr by default; what matters reaches the
		// caller as errors.
		config.WithLogger(logging.Nop{}),
	}, extra...)
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 %s: load AWS configuration: %w", u.Host, err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	custom := cfg.BaseEndpoint != nil || os.Getenv("AWS_ENDPOINT_URL") != "" || os.Getenv("AWS_ENDPOINT_URL_S3") != ""
	client := awss3.NewFromConfig(cfg, func(o *awss3.Options) {
		// Custom endpoints (MinIO, Ceph, …) rarely serve virtual-host buckets.
		o.UsePathStyle = custom
		// Ranged reads (pack members, verify) carry no whole-object
		// checksum; every object is checksummed by its own format anyway.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	desc := "s3://" + u.Host + "/" + prefix
	if cfg.BaseEndpoint != nil {
		desc += " (endpoint " + *cfg.BaseEndpoint + ")"
	}
	return &Store{client: client, bucket: u.Host, prefix: prefix, desc: desc}, nil
}

// Location implements archive.Store.
func (s *Store) Location() string { return s.desc }

func (s *Store) key(name string) (string, error) {
	if !archive.ValidName(name) {
		return "", fmt.Errorf("invalid object name %q", name)
	}
	return s.prefix + name, nil
}

func (s *Store) buffer() []byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, partSize)
}

func (s *Store) release(b []byte) {
	if cap(b) == partSize {
		s.bufs.Put(&b)
	}
}

// Put implements archive.Store: one conditional PutObject for objects that
// fit in a part, a conditional multipart upload otherwise.
func (s *Store) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	key, err := s.key(name)
	if err != nil {
		return fmt.Errorf("s3 put: %w", err)
	}
	r = storeutil.ContextReader{Ctx: ctx, R: r}
	meta := map[string]string{putTokenKey: storeutil.PutToken(ctx)}
	buf, n, err := s.readFirst(r)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		err = s.putSingle(ctx, key, buf[:n], meta)
		s.release(buf)
	case err != nil:
		s.release(buf)
		err = fmt.Errorf("read object data: %w", err)
	default:
		err = s.putMultipart(ctx, key, buf, r, meta)
	}
	if errors.Is(err, archive.ErrExist) && s.ownedBy(key, meta[putTokenKey]) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("s3 put %s: %w", name, err)
	}
	return nil
}

// putTokenKey is the object metadata (x-amz-meta-tidemark-put) holding a
// random token per Put. The SDK repeats a request whose response was lost;
// when the repeat of a conditional create is refused because the first
// attempt landed, the token shows the object is this Put's own, so it
// succeeds instead of reporting a false archive.ErrExist (which a lock
// would read as lost).
const putTokenKey = "tidemark-put"

// ownedBy reports whether key exists and was written by the Put holding token.
func (s *Store) ownedBy(key, token string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	return err == nil && out.Metadata[putTokenKey] == token
}

// readFirst reads up to one part. Most objects (chunks, WAL parts) are far
// smaller than a part, so it starts with a small buffer and only takes a
// part-sized one when the data keeps coming.
func (s *Store) readFirst(r io.Reader) ([]byte, int, error) {
	const small = 1 << 20
	head := make([]byte, small)
	n, err := io.ReadFull(r, head)
	if err != nil {
		return head, n, err
	}
	buf := s.buffer()
	copy(buf, head)
	m, err := io.ReadFull(r, buf[small:])
	return buf, small + m, err
}

func (s *Store) putSingle(ctx context.Context, key string, data []byte, meta map[string]string) error {
	_, err := s.client.PutObject(ctx, &awss3.PutObjectInput{
		Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(data), Metadata: meta,
		ContentLength: aws.Int64(int64(len(data))), IfNoneMatch: aws.String("*"),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
	})
	return classify(err)
}

// putMultipart uploads first (a full part) and the rest of r as parts, at
// most partsInFlight at a time, and completes only if key is still absent.
// Any failure aborts the upload so nothing becomes visible.
func (s *Store) putMultipart(ctx context.Context, key string, first []byte, r io.Reader, meta map[string]string) (err error) {
	up, err := s.client.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{
		Bucket: &s.bucket, Key: &key, Metadata: meta, ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
	if err != nil {
		s.release(first)
		return classify(err)
	}
	defer func() {
		if err != nil {
			// A fresh context: the caller's may be what was cancelled.
			actx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s.client.AbortMultipartUpload(actx, &awss3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: up.UploadId})
		}
	}()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu    sync.Mutex
		parts []types.CompletedPart
		wg    sync.WaitGroup
		sem   = make(chan struct{}, partsInFlight)
	)
	upload := func(num int32, data []byte, buf []byte) {
		defer wg.Done()
		defer func() { <-sem }()
		defer s.release(buf)
		out, err := s.client.UploadPart(ctx, &awss3.UploadPartInput{Bucket: &s.bucket, Key: &key, UploadId: up.UploadId,
			PartNumber: aws.Int32(num), Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
		if err != nil {
			cancel(fmt.Errorf("upload part %d: %w", num, classify(err)))
			return
		}
		mu.Lock()
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(num), ETag: out.ETag, ChecksumCRC32C: out.ChecksumCRC32C})
		mu.Unlock()
	}
	buf, n := first, len(first)
	for num := int32(1); ; num++ {
		if num > maxParts {
			cancel(fmt.Errorf("object larger than %d parts of %d MiB", maxParts, partSize>>20))
			s.release(buf)
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			s.release(buf)
			break
		}
		last := n < len(buf) // a short part is the end of the data
		wg.Add(1)
		go upload(num, buf[:n], buf)
		if last {
			break
		}
		buf = s.buffer()
		var rerr error
		n, rerr = io.ReadFull(r, buf)
		if rerr == io.EOF {
			s.release(buf)
			break
		}
		if rerr != nil && rerr != io.ErrUnexpectedEOF {
			cancel(fmt.Errorf("read object data: %w", rerr))
			s.release(buf)
			break
		}
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	sortParts(parts)
	_, err = s.client.CompleteMultipartUpload(ctx, &awss3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &key, UploadId: up.UploadId, IfNoneMatch: aws.String("*"),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	return classify(err)
}

func sortParts(p []types.CompletedPart) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && *p[j].PartNumber < *p[j-1].PartNumber; j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}

// Get implements archive.Store.
func (s *Store) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	key, err := s.key(name)
	if err != nil {
		return nil, fmt.Errorf("s3 get: %w", err)
	}
	if length == 0 {
		return storeutil.EmptyRead(ctx, s, name, off)
	}
	in := &awss3.GetObjectInput{Bucket: &s.bucket, Key: &key}
	switch {
	case length > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", off, off+length-1))
	case off > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", off))
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		err = classify(err)
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "InvalidRange" {
			if rc, err := storeutil.EmptyRead(ctx, s, name, off); err == nil {
				return rc, nil
			}
		}
		return nil, fmt.Errorf("s3 get %s: %w", name, err)
	}
	return out.Body, nil
}

// Stat implements archive.Store.
func (s *Store) Stat(ctx context.Context, name string) (archive.ObjectInfo, error) {
	key, err := s.key(name)
	if err != nil {
		return archive.ObjectInfo{}, fmt.Errorf("s3 stat: %w", err)
	}
	out, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return archive.ObjectInfo{}, fmt.Errorf("s3 stat %s: %w", name, classify(err))
	}
	return archive.ObjectInfo{Name: name, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}, nil
}

// Delete implements archive.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	key, err := s.key(name)
	if err != nil {
		return fmt.Errorf("s3 delete: %w", err)
	}
	if _, err := s.client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &s.bucket, Key: &key}); err != nil {
		if err = classify(err); !errors.Is(err, archive.ErrNotExist) {
			return fmt.Errorf("s3 delete %s: %w", name, err)
		}
	}
	return nil
}

// List implements archive.Store. S3 lists keys in lexical (UTF-8 byte) order.
func (s *Store) List(ctx context.Context, prefix, startAfter string, fn func(archive.ObjectInfo) error) error {
	in := &awss3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.prefix + prefix)}
	if startAfter != "" {
		in.StartAfter = aws.String(s.prefix + startAfter)
	}
	if s.pageSize > 0 {
		in.MaxKeys = &s.pageSize
	}
	p := awss3.NewListObjectsV2Paginator(s.client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3 list %q: %w", prefix, classify(err))
		}
		for _, o := range page.Contents {
			name := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			if !archive.ValidName(name) {
				continue // not ours (e.g. a directory marker)
			}
			if err := fn(archive.ObjectInfo{Name: name, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// classify maps S3 errors onto the Store contract's errors, keeping the
// original in the chain.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return fmt.Errorf("%w: %w", archive.ErrNotExist, err)
		case "PreconditionFailed":
			return fmt.Errorf("%w: %w", archive.ErrExist, err)
		case "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "XMinioServerNotInitialized":
			return fmt.Errorf("%w: %w", archive.ErrUnavailable, err)
		}
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && (re.HTTPStatusCode() >= 500 || re.HTTPStatusCode() == http.StatusTooManyRequests) {
		return fmt.Errorf("%w: %w", archive.ErrUnavailable, err)
	}
	return err
}
