//go:build !tidemark_nocloud

package all

import (
	"context"
	"net/url"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/azblob"
	"github.com/tidemark/tidemark/archive/store/gcs"
	"github.com/tidemark/tidemark/archive/store/retry"
	"github.com/tidemark/tidemark/archive/store/s3"
)

// cloud opens an object store: S3, Google Cloud Storage or Azure Blob
// Storage, by the URL's scheme (Open has checked it is one of those).
func cloud(ctx context.Context, u *url.URL) (archive.Store, error) {
	switch u.Scheme {
	case "s3":
		return remote(s3.Open(ctx, u))
	case "gs":
		return remote(gcs.Open(ctx, u))
	default:
		return remote(azblob.Open(ctx, u))
	}
}

// remote is store for an object store, wrapped in retries.
func remote[S archive.Store](s S, err error) (archive.Store, error) {
	if err != nil {
		return nil, err
	}
	return retry.Wrap(s, retry.Options{}), nil
}
