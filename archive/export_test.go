package archive

import (
	"context"
	"net/http"
	"net/url"

	"google.golang.org/api/option"
)

// SetListPageSize makes an object store list in pages of n names, so the
// conformance suite crosses page boundaries without thousands of objects.
func SetListPageSize(s Store, n int) {
	switch s := s.(type) {
	case *S3Store:
		s.pageSize = int32(n)
	case *GCSStore:
		s.pageSize = n
	case *AzureStore:
		s.pageSize = int32(n)
	}
}

// OpenGCSWithTransport opens a GCS store whose HTTP requests go through rt.
func OpenGCSWithTransport(ctx context.Context, u *url.URL, rt http.RoundTripper) (*GCSStore, error) {
	return openGCS(ctx, u, option.WithHTTPClient(&http.Client{Transport: rt}))
}

// OpenAzureWithTransport opens an Azure store whose HTTP requests go through rt.
func OpenAzureWithTransport(ctx context.Context, u *url.URL, rt http.RoundTripper) (*AzureStore, error) {
	return openAzure(ctx, u, &http.Client{Transport: rt})
}
