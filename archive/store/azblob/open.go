package azblob

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/internal/storeutil"
)

// Environment variables that configure Azure Blob Storage repositories. Keys
// and SAS tokens come from the environment or from files, never from the URL
// or the command line.
const (
	envAzureAccount    = "AZURE_STORAGE_ACCOUNT"
	envAzureKey        = "AZURE_STORAGE_KEY"
	envAzureKeyFile    = "AZURE_STORAGE_KEY_FILE"
	envAzureSAS        = "AZURE_STORAGE_SAS_TOKEN"
	envAzureSASFile    = "AZURE_STORAGE_SAS_TOKEN_FILE"
	envAzureConnString = "AZURE_STORAGE_CONNECTION_STRING"
	envAzureEndpoint   = "AZURE_STORAGE_ENDPOINT" // service URL override, e.g. Azurite's
)

// azureLocation is what a repository URL says about a container.
type azureLocation struct {
	account    string // "" when it comes from the environment
	serviceURL string // "" when it comes from the environment
	container  string
	prefix     string // "" or ends with "/"
}

// parseAzureURL accepts azblob://container/prefix and
// https://ACCOUNT.blob.core.windows.net/container/prefix (any cloud's
// ACCOUNT.blob.<suffix> host).
func parseAzureURL(u *url.URL) (azureLocation, error) {
	bad := func(why string) (azureLocation, error) {
		return azureLocation{}, fmt.Errorf("%w: Azure URL %q: %s", archive.ErrBadURL, storeutil.SafeURL(u), why)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return bad("keys and SAS tokens come from the environment or files, not the URL")
	}
	var loc azureLocation
	path := strings.Trim(u.Path, "/")
	switch u.Scheme {
	case "azblob":
		loc.container = u.Host
	case "https":
		account, rest, ok := strings.Cut(u.Host, ".")
		if !ok || !strings.HasPrefix(rest, "blob.") || account == "" {
			return bad("want https://ACCOUNT.blob.core.windows.net/container/prefix")
		}
		loc.account, loc.serviceURL = account, "https://"+u.Host
		loc.container, path, _ = strings.Cut(path, "/")
	default:
		return bad("unsupported scheme")
	}
	if loc.container == "" {
		return bad("no container")
	}
	if path != "" {
		loc.prefix = path + "/"
	}
	return loc, nil
}

// Open opens an Azure Blob Storage container. Credentials, first match:
//
//   - AZURE_STORAGE_CONNECTION_STRING (account key or SAS, and endpoint)
//   - AZURE_STORAGE_KEY or AZURE_STORAGE_KEY_FILE: shared key
//   - AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_SAS_TOKEN_FILE: SAS
//   - otherwise DefaultAzureCredential (service principal environment,
//     workload identity, managed identity, Azure CLI login)
//
// The account is the URL's or AZURE_STORAGE_ACCOUNT; AZURE_STORAGE_ENDPOINT
// replaces the service URL (https://ACCOUNT.blob.core.windows.net), e.g. for
// Azurite.
func Open(ctx context.Context, u *url.URL) (*Store, error) { return open(ctx, u, nil) }

// open is Open over a given HTTP transport (tests inject faults
// with it); nil is the default.
func open(ctx context.Context, u *url.URL, transport policy.Transporter) (*Store, error) {
	loc, err := parseAzureURL(u)
	if err != nil {
		return nil, err
	}
	opts := &container.ClientOptions{ClientOptions: azcore.ClientOptions{Retry: policy.RetryOptions{
		// A few quick retries smooth over a dropped request; long outages are
		// outlasted by the retrying decorator every store is opened in
		// (archive/store/retry), which names the store when it gives up.
		MaxRetries: 2, RetryDelay: 200 * time.Millisecond, MaxRetryDelay: 2 * time.Second}, Transport: transport}}
	client, desc, err := azureClient(loc, opts)
	if err != nil {
		return nil, fmt.Errorf("azblob %s: %w", loc.container, err)
	}
	return &Store{client: client, prefix: loc.prefix, desc: desc}, nil
}

func azureClient(loc azureLocation, opts *container.ClientOptions) (*container.Client, string, error) {
	key, err := secretFromEnv(envAzureKey, envAzureKeyFile)
	if err != nil {
		return nil, "", err
	}
	sas, err := secretFromEnv(envAzureSAS, envAzureSASFile)
	if err != nil {
		return nil, "", err
	}
	conn := os.Getenv(envAzureConnString)
	if n := btoi(conn != "") + btoi(key != "") + btoi(sas != ""); n > 1 {
		return nil, "", fmt.Errorf("%w: set only one of %s, %s(_FILE) and %s(_FILE)", archive.ErrBadURL, envAzureConnString, envAzureKey, envAzureSAS)
	}
	desc := "azblob://" + loc.container + "/" + loc.prefix
	if conn != "" {
		c, err := container.NewClientFromConnectionString(conn, loc.container, opts)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", envAzureConnString, err)
		}
		where, _ := url.Parse(c.URL())
		where.RawQuery = "" // a SAS from the connection string stays out of messages
		return c, desc + " (" + where.String() + ", connection string)", nil
	}
	account := loc.account
	if account == "" {
		account = os.Getenv(envAzureAccount)
	}
	service := os.Getenv(envAzureEndpoint)
	if service == "" {
		service = loc.serviceURL
	}
	if service == "" {
		if account == "" {
			return nil, "", fmt.Errorf("%w: no storage account: set %s or use https://ACCOUNT.blob.core.windows.net/container/prefix", archive.ErrBadURL, envAzureAccount)
		}
		service = "https://" + account + ".blob.core.windows.net"
	}
	containerURL := strings.TrimSuffix(service, "/") + "/" + url.PathEscape(loc.container)
	desc += " (" + containerURL
	switch {
	case key != "":
		if account == "" {
			return nil, "", fmt.Errorf("%w: a shared key needs the account name (%s)", archive.ErrBadURL, envAzureAccount)
		}
		cred, err := container.NewSharedKeyCredential(account, key)
		if err != nil {
			return nil, "", fmt.Errorf("shared key: %w", err)
		}
		c, err := container.NewClientWithSharedKeyCredential(containerURL, cred, opts)
		return c, desc + ", shared key)", err
	case sas != "":
		c, err := container.NewClientWithNoCredential(containerURL+"?"+strings.TrimPrefix(sas, "?"), opts)
		return c, desc + ", SAS)", err
	default:
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, "", fmt.Errorf("DefaultAzureCredential: %w", err)
		}
		c, err := container.NewClient(containerURL, cred, opts)
		return c, desc + ", Azure AD)", err
	}
}

// secretFromEnv reads a secret from env var name or from the file named by
// fileVar (one trailing newline dropped); setting both is ambiguous.
func secretFromEnv(name, fileVar string) (string, error) {
	v, path := os.Getenv(name), os.Getenv(fileVar)
	if v != "" && path != "" {
		return "", fmt.Errorf("%w: set %s or %s, not both", archive.ErrBadURL, name, fileVar)
	}
	if path == "" {
		return v, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", fileVar, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%w: %s: file %s is empty", archive.ErrBadURL, fileVar, path)
	}
	return s, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
