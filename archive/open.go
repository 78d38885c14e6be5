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
	default:
		return nil, fmt.Errorf("%w: repository URL %q: unsupported scheme %q (supported: file://, s3://)", ErrBadURL, repoURL, u.Scheme)
	}
}

// ErrBadURL marks a repository URL that cannot name a store.
var ErrBadURL = errors.New("bad repository URL")
