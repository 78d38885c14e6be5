//go:build tidemark_nocloud

package all

import (
	"context"
	"fmt"
	"net/url"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/internal/storeutil"
)

// cloud refuses object stores in a build without their SDKs (the tag
// tidemark_nocloud: `make demo`'s quick build, which uses local disk only).
func cloud(_ context.Context, u *url.URL) (archive.Store, error) {
	return nil, fmt.Errorf("%w: repository URL %q: this tidemark was built without the object stores (-tags tidemark_nocloud); `make build` builds them in", archive.ErrBadURL, storeutil.SafeURL(u))
}
