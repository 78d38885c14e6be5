// Package s3 is the store for Amazon S3 and S3-compatible servers (MinIO,
// Ceph, ...), write-once through conditional writes.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

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
func Open(ctx context.Context, u *url.URL) (*Store, error) {
	if u.Host == "" {
		return nil, fmt.Errorf("%w: s3 URL %q: no bucket", archive.ErrBadURL, u.String())
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRetryer(func() aws.Retryer {
		// More patience than the default 3 attempts: backups run unattended.
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 10
			o.MaxBackoff = 20 * time.Second
		})
	}))
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
	buf, n, err := s.readFirst(r)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		err = s.putSingle(ctx, key, buf[:n])
		s.release(buf)
	case err != nil:
		s.release(buf)
		err = fmt.Errorf("read object data: %w", err)
	default:
		err = s.putMultipart(ctx, key, buf, r)
	}
	if err != nil {
		return fmt.Errorf("s3 put %s: %w", name, err)
	}
	return nil
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

func (s *Store) putSingle(ctx context.Context, key string, data []byte) error {
	_, err := s.client.PutObject(ctx, &awss3.PutObjectInput{
		Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))), IfNoneMatch: aws.String("*"),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
	})
	return classify(err)
}

// putMultipart uploads first (a full part) and the rest of r as parts, at
// most partsInFlight at a time, and completes only if key is still absent.
// Any failure aborts the upload so nothing becomes visible.
func (s *Store) putMultipart(ctx context.Context, key string, first []byte, r io.Reader) (err error) {
	up, err := s.client.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{
		Bucket: &s.bucket, Key: &key, ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c})
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
		}
	}
	return err
}
