package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// FakeGCS is a throwaway fake-gcs-server (Google Cloud Storage emulator) on
// 127.0.0.1, keeping objects in memory. Clients reach it through
// STORAGE_EMULATOR_HOST, which the Google client honours without credentials.
type FakeGCS struct {
	Host string // 127.0.0.1:PORT, the value for STORAGE_EMULATOR_HOST

	dir  string
	proc *process
}

var sharedFakeGCS shared[*FakeGCS]

// FakeGCSServer returns the package's shared server, starting it on first use.
func FakeGCSServer(t testing.TB) *FakeGCS {
	t.Helper()
	g, err := sharedFakeGCS.get(func() (*FakeGCS, func(), error) {
		g, err := StartFakeGCS()
		if err != nil {
			return nil, nil, err
		}
		return g, g.Stop, nil
	})
	if err != nil {
		Unavailable(t, "fake-gcs-server", err)
	}
	return g
}

// StartFakeGCS starts a server; Stop stops it.
func StartFakeGCS() (*FakeGCS, error) {
	bin, err := CachedBinary("fake-gcs-server", FakeGCSVersion)
	if err != nil {
		return nil, err
	}
	dir, err := tempDir("tidemark-gcs-")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	g := &FakeGCS{Host: fmt.Sprintf("127.0.0.1:%d", port), dir: dir}
	// The public host and external URL are what the server puts into
	// resumable-upload session URLs; they must point back at it.
	proc, err := startProcess("fake-gcs-server", filepath.Join(dir, "gcs.log"), nil, nil, bin,
		"-scheme", "http", "-host", "127.0.0.1", "-port", fmt.Sprint(port), "-backend", "memory",
		"-public-host", g.Host, "-external-url", "http://"+g.Host, "-log-level", "warn")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	g.proc = proc
	if err := proc.waitReady(func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+g.Host+"/storage/v1/b", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("list buckets: %s", resp.Status)
		}
		return nil
	}); err != nil {
		g.Stop()
		return nil, err
	}
	return g, nil
}

// CreateBucket makes a fresh, uniquely named bucket.
func (g *FakeGCS) CreateBucket(ctx context.Context) (string, error) {
	name := NewName()
	body, _ := json.Marshal(map[string]string{"name": name})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+g.Host+"/storage/v1/b", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("create bucket %s: %w", name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("create bucket %s: %s", name, resp.Status)
	}
	return name, nil
}

// NewBucket makes a fresh bucket for a test.
func (g *FakeGCS) NewBucket(t testing.TB) string {
	t.Helper()
	return Create(t, g.CreateBucket)
}

// Env points the Google client (in this process and in children) at the server.
func (g *FakeGCS) Env() []string { return []string{"STORAGE_EMULATOR_HOST=" + g.Host} }

// SetEnv sets Env for the duration of a test.
func (g *FakeGCS) SetEnv(t *testing.T) { setEnv(t, g.Env()) }

// Stop stops the server and removes its files.
func (g *FakeGCS) Stop() {
	if g.proc != nil {
		g.proc.stop(syscall.SIGTERM, 10*time.Second)
	}
	os.RemoveAll(g.dir)
}
