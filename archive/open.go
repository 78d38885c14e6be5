package archive

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// OpenStore opens the store a repository URL names. Every supported scheme
// is listed here, in one place:
//
//	file:///path or a plain path   local disk (FileStore)
//	s3://bucket/prefix             S3 or an S3-compatible server (S3Store)
//	gs://bucket/prefix             Google Cloud Storage (GCSStore)
//	azblob://container/prefix      Azure Blob Storage, account from the
//	                               environment (AzureStore)
//	https://ACCOUNT.blob.core.windows.net/container/prefix
//	                               Azure Blob Storage (AzureStore)
func OpenStore(ctx context.Context, repoURL string) (Store, error) {
	if repoURL == "" {
		return nil, fmt.Errorf("%w: no repository given (--repo or TIDEMARK_REPO)", ErrBadURL)
	}
	if !strings.Contains(repoURL, "://") {
		return OpenFile(repoURL)
	}
	u, err := url.Parse(repoURL)
	if err != nil {
		return nil, fmt.Errorf("%w: repository URL %q: %v", ErrBadURL, repoURL, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("%w: repository URL %q: file URLs take no host (file:///abs/path)", ErrBadURL, repoURL)
		}
		return OpenFile(u.Path)
	case "s3":
		return OpenS3(ctx, u)
	case "gs":
		return OpenGCS(ctx, u)
	case "azblob", "https":
		return OpenAzure(ctx, u)
	default:
		return nil, fmt.Errorf("%w: repository URL %q: unsupported scheme %q (supported: file://, s3://, gs://, azblob://, https://ACCOUNT.blob.core.windows.net/)", ErrBadURL, safeURL(u), u.Scheme)
	}
}

// safeURL shows a URL in messages without anything that may hold a secret
// (user info, query, fragment).
func safeURL(u *url.URL) string {
	v := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return v.String()
}

// ErrBadURL marks a repository URL that cannot name a store.
var ErrBadURL = errors.New("bad repository URL")
