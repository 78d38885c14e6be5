package testenv

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Azurite is a throwaway Azurite (Azure Blob Storage emulator) on 127.0.0.1,
// run with Node.js, keeping blobs in memory, with one storage account whose
// name and shared key are generated for this run.
type Azurite struct {
	Endpoint string // http://127.0.0.1:PORT/ACCOUNT, the blob service URL
	Account  string
	Key      string // base64 shared key

	dir  string
	proc *process
}

var sharedAzurite shared[*Azurite]

// AzuriteServer returns the package's shared server, starting it on first use.
func AzuriteServer(t testing.TB) *Azurite {
	t.Helper()
	a, err := sharedAzurite.get(func() (*Azurite, func(), error) {
		a, err := StartAzurite()
		if err != nil {
			return nil, nil, err
		}
		return a, a.Stop, nil
	})
	if err != nil {
		Unavailable(t, "Azurite", err)
	}
	return a
}

// StartAzurite starts a server; Stop stops it and removes its files.
func StartAzurite() (*Azurite, error) {
	script := filepath.Join(CacheDir(), "azurite", AzuriteVersion, "node_modules", "azurite", "dist", "src", "blob", "main.js")
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("azurite %s not installed at %s", AzuriteVersion, script)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("azurite needs Node.js: %w", err)
	}
	dir, err := tempDir("tidemark-azurite-")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	key := make([]byte, 64)
	rand.Read(key)
	a := &Azurite{Account: "tm" + randomHex(6), Key: base64.StdEncoding.EncodeToString(key), dir: dir}
	a.Endpoint = fmt.Sprintf("http://127.0.0.1:%d/%s", port, a.Account)
	// --skipApiVersionCheck: the Go SDK may speak a newer service version
	// than this Azurite release knows; the operations we use are old ones.
	proc, err := startProcess("Azurite", filepath.Join(dir, "azurite.log"), nil,
		[]string{"AZURITE_ACCOUNTS=" + a.Account + ":" + a.Key}, node, script,
		"--blobHost", "127.0.0.1", "--blobPort", fmt.Sprint(port),
		"--inMemoryPersistence", "--extentMemoryLimit", "2048", "--skipApiVersionCheck", "--disableProductStyleUrl",
		"--disableTelemetry")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	a.proc = proc
	if err := proc.waitReady(func(ctx context.Context) error {
		// Any HTTP answer (an auth error for this anonymous request) means it serves.
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.Endpoint+"?comp=list", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}); err != nil {
		a.Stop()
		return nil, err
	}
	return a, nil
}

// ConnectionString is the account's connection string (key and endpoint).
func (a *Azurite) ConnectionString() string {
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s;", a.Account, a.Key, a.Endpoint)
}

// Env points Azure clients (in this process and in children) at the server
// through a connection string.
func (a *Azurite) Env() []string {
	return []string{"AZURE_STORAGE_CONNECTION_STRING=" + a.ConnectionString()}
}

// SetEnv sets Env for the duration of a test.
func (a *Azurite) SetEnv(t *testing.T) { setEnv(t, a.Env()) }

// Stop stops the server and removes its files.
func (a *Azurite) Stop() {
	if a.proc != nil {
		a.proc.stop(syscall.SIGTERM, 10*time.Second)
	}
	os.RemoveAll(a.dir)
}
