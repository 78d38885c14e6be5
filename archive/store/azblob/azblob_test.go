package azblob

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/storetest"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/storeenv"
)

// TestMain stops the server (Azurite) the package's tests started.
func TestMain(m *testing.M) { testenv.Main(m) }

// TestAzureStoreConformance runs the store suite against Azurite, under a
// prefix to prove prefixes are honoured, with small listing pages.
func TestAzureStoreConformance(t *testing.T) {
	a := storeenv.AzuriteServer(t)
	a.SetEnv(t)
	ctr := a.NewContainer(t)
	storetest.Run(t, func(t *testing.T) archive.Store {
		s, err := openURL(context.Background(), "azblob://"+ctr+"/"+t.Name(), nil)
		if err != nil {
			t.Fatal(err)
		}
		s.pageSize = 100
		return s
	}, storetest.Options{})
}

// TestAzureCredentialOptions opens the same container with a shared key
// file, a SAS token file and the account URL form, and checks that a wrong
// key and ambiguous settings are clear errors.
func TestAzureCredentialOptions(t *testing.T) {
	a := storeenv.AzuriteServer(t)
	ctr := a.NewContainer(t)
	dir := t.TempDir()
	keyFile, sasFile, badKeyFile := filepath.Join(dir, "key"), filepath.Join(dir, "sas"), filepath.Join(dir, "bad")
	cred, err := container.NewSharedKeyCredential(a.Account, a.Key)
	if err != nil {
		t.Fatal(err)
	}
	perms := &sas.ContainerPermissions{Read: true, Add: true, Create: true, Write: true, Delete: true, List: true}
	qp, err := sas.BlobSignatureValues{Protocol: sas.ProtocolHTTPSandHTTP, ExpiryTime: time.Now().Add(time.Hour),
		Permissions: perms.String(), ContainerName: ctr}.SignWithSharedKey(cred)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(keyFile, []byte(a.Key+"\n"), 0o600)
	os.WriteFile(sasFile, []byte(qp.Encode()+"\n"), 0o600)
	os.WriteFile(badKeyFile, []byte("c2VjcmV0LWJ1dC13cm9uZw==\n"), 0o600)
	t.Setenv("AZURE_STORAGE_CONNECTION_STRING", "")
	t.Setenv("AZURE_STORAGE_ENDPOINT", a.Endpoint)
	t.Setenv("AZURE_STORAGE_ACCOUNT", a.Account)
	ctx := context.Background()
	roundTrip := func(repoURL, name string) error {
		s, err := openURL(ctx, repoURL, nil)
		if err != nil {
			return err
		}
		if err := s.Put(ctx, name, strings.NewReader("x"), 1); err != nil {
			return err
		}
		_, err = s.Stat(ctx, name)
		return err
	}
	t.Run("SharedKeyFile", func(t *testing.T) {
		t.Setenv("AZURE_STORAGE_KEY_FILE", keyFile)
		if err := roundTrip("azblob://"+ctr+"/p", "key"); err != nil {
			t.Fatal(err)
		}
		// The account URL form names the account itself.
		t.Setenv("AZURE_STORAGE_ACCOUNT", "")
		if err := roundTrip("https://"+a.Account+".blob.core.windows.net/"+ctr+"/p", "url-form"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SASFile", func(t *testing.T) {
		t.Setenv("AZURE_STORAGE_SAS_TOKEN_FILE", sasFile)
		if err := roundTrip("azblob://"+ctr+"/p", "sas"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("WrongKey", func(t *testing.T) {
		t.Setenv("AZURE_STORAGE_KEY_FILE", badKeyFile)
		err := roundTrip("azblob://"+ctr+"/p", "wrong")
		if err == nil || errors.Is(err, archive.ErrExist) || errors.Is(err, archive.ErrNotExist) || !strings.Contains(err.Error(), "403") {
			t.Fatalf("put with a wrong key: %v", err)
		}
	})
	t.Run("Ambiguous", func(t *testing.T) {
		t.Setenv("AZURE_STORAGE_KEY_FILE", keyFile)
		t.Setenv("AZURE_STORAGE_SAS_TOKEN_FILE", sasFile)
		if _, err := openURL(ctx, "azblob://"+ctr+"/p", nil); !errors.Is(err, archive.ErrBadURL) {
			t.Fatalf("key and SAS both set: %v", err)
		}
	})
	t.Run("NoAccount", func(t *testing.T) {
		t.Setenv("AZURE_STORAGE_ACCOUNT", "")
		t.Setenv("AZURE_STORAGE_ENDPOINT", "")
		if _, err := openURL(ctx, "azblob://"+ctr+"/p", nil); !errors.Is(err, archive.ErrBadURL) || !strings.Contains(err.Error(), "AZURE_STORAGE_ACCOUNT") {
			t.Fatalf("no account: %v", err)
		}
	})
	t.Run("BadURLs", func(t *testing.T) {
		for _, u := range []string{"azblob:///p", "https://example.com/c/p", "azblob://c/p?sig=secret", "https://acct.blob.core.windows.net/"} {
			if _, err := openURL(ctx, u, nil); !errors.Is(err, archive.ErrBadURL) || strings.Contains(err.Error(), "secret") {
				t.Errorf("open %s: %v", u, err)
			}
		}
	})
}

func TestAzureRetriedCreateFindsItsOwnObject(t *testing.T) {
	lost := &storetest.LostResponses{Match: func(r *http.Request) bool {
		return r.Method == http.MethodPut && r.URL.Query().Get("comp") == ""
	}}
	storetest.RetriedCreate(t, openFaulty(t, lost), lost)
}

func TestAzureDownloadResumes(t *testing.T) {
	broken := &storetest.BrokenDownloads{After: 100 << 10, Match: func(r *http.Request) bool {
		return r.Method == http.MethodGet && r.URL.Query().Get("comp") == "" && r.URL.Query().Get("restype") == ""
	}}
	storetest.ResumedDownload(t, openFaulty(t, broken), broken)
}

// openURL parses a repository URL and opens it over transport (nil: the
// default), as archive/store/all does for an azblob:// or https:// URL.
func openURL(ctx context.Context, raw string, transport policy.Transporter) (*Store, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	return open(ctx, u, transport)
}

// openFaulty opens a store on a fresh Azurite container whose HTTP requests
// go through rt.
func openFaulty(t *testing.T, rt http.RoundTripper) *Store {
	t.Helper()
	a := storeenv.AzuriteServer(t)
	a.SetEnv(t)
	s, err := openURL(context.Background(), "azblob://"+a.NewContainer(t)+"/p", &http.Client{Transport: rt})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
