// Package all opens the store a repository URL names. It is the one place
// that knows every store, and so the one that links every cloud SDK: only
// the programs (cmd/tidemark, bench) import it. Library code receives an
// archive.Store or an *archive.Repository instead of opening URLs itself.
package all

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/file"
	"github.com/tidemark/tidemark/archive/store/internal/storeutil"
)

// Open opens the store a repository URL names. Every supported scheme is
// listed here, in one place:
//
//	file:///path or a plain path   local disk (file.Store)
//	s3://bucket/prefix             S3 or an S3-compatible server (s3.Store)
//	gs://bucket/prefix             Google Cloud Storage (gcs.Store)
//	azblob://container/prefix      Azure Blob Storage, account from the
//	                               environment (azblob.Store)
//	https://ACCOUNT.blob.core.windows.net/container/prefix
//	                               Azure Blob Storage (azblob.Store)
//
// A URL that names no store is an error wrapping archive.ErrBadURL.
//
// Object stores come wrapped in the retrying decorator (archive/store/retry):
// every operation outlasts an outage of minutes, then fails naming the store
// and the operation. Local disk is not: its failures (a full disk, a
// permission refused) do not pass by waiting.
func Open(ctx context.Context, repoURL string) (archive.Store, error) {
	if repoURL == "" {
		return nil, fmt.Errorf("%w: no repository given (--repo or TIDEMARK_REPO)", archive.ErrBadURL)
	}
	if !strings.Contains(repoURL, "://") {
		return store(file.Open(repoURL))
	}
	u, err := url.Parse(repoURL)
	if err != nil {
		return nil, fmt.Errorf("%w: repository URL %q: %v", archive.ErrBadURL, repoURL, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("%w: repository URL %q: file URLs take no host (file:///abs/path)", archive.ErrBadURL, repoURL)
		}
		return store(file.Open(u.Path))
	case "s3", "gs", "azblob", "https":
		return cloud(ctx, u)
	default:
		return nil, fmt.Errorf("%w: repository URL %q: unsupported scheme %q (supported: file://, s3://, gs://, azblob://, https://ACCOUNT.blob.core.windows.net/)", archive.ErrBadURL, storeutil.SafeURL(u), u.Scheme)
	}
}

// store passes on an opener's result as an archive.Store, and a failed open
// as a nil one: never a non-nil interface around a nil pointer.
func store[S archive.Store](s S, err error) (archive.Store, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}
