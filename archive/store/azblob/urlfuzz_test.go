package azblob

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzParseAzureURL: whatever a user writes as a repository URL, parsing
// never panics, never accepts a URL carrying a secret (user info, query),
// and an accepted URL names a container and a clean prefix.
func FuzzParseAzureURL(f *testing.F) {
	for _, s := range []string{"azblob://c/p", "azblob://c", "https://acct.blob.core.windows.net/c/a/b/",
		"https://acct.blob.core.windows.net/", "azblob://u:pw@c/p", "azblob://c/p?sig=x", "https://x.y/c", "azblob:///p"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		loc, err := parseAzureURL(u)
		if err != nil {
			return
		}
		if u.User != nil || u.RawQuery != "" {
			t.Fatalf("%q accepted with user info or a query", raw)
		}
		if loc.container == "" || strings.Contains(loc.container, "/") {
			t.Fatalf("%q: container %q", raw, loc.container)
		}
		if loc.prefix != "" && (!strings.HasSuffix(loc.prefix, "/") || strings.HasPrefix(loc.prefix, "/")) {
			t.Fatalf("%q: prefix %q", raw, loc.prefix)
		}
	})
}
