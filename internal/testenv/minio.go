package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// MinIO is a throwaway MinIO (S3) server on 127.0.0.1 with random
// credentials generated for this run.
type MinIO struct {
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Region    string

	dir  string
	proc *process
	env  []string // to start it again after Kill
	args []string
	bin  string
}

var sharedMinIO shared[*MinIO]

// MinIOServer returns the package's shared server, starting it on first use.
func MinIOServer(t testing.TB) *MinIO {
	t.Helper()
	m, err := sharedMinIO.get(func() (*MinIO, func(), error) {
		m, err := StartMinIO()
		if err != nil {
			return nil, nil, err
		}
		return m, m.Stop, nil
	})
	if err != nil {
		Unavailable(t, "MinIO", err)
	}
	return m
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// StartMinIO starts a server; Stop stops it and removes its files.
func StartMinIO() (*MinIO, error) {
	bin, err := CachedBinary("minio", MinIOVersion)
	if err != nil {
		return nil, err
	}
	dir, err := tempDir("tidemark-minio-")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	consolePort, err := FreePort()
	if err != nil {
		return nil, err
	}
	m := &MinIO{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), AccessKey: "tm" + randomHex(8),
		SecretKey: randomHex(20), Region: "us-east-1", dir: dir}
	m.env = []string{"MINIO_ROOT_USER=" + m.AccessKey, "MINIO_ROOT_PASSWORD=" + m.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_REGION=" + m.Region}
	m.bin, m.args = bin, []string{"server", filepath.Join(dir, "data"),
		"--address", fmt.Sprintf("127.0.0.1:%d", port), "--console-address", fmt.Sprintf("127.0.0.1:%d", consolePort), "--quiet"}
	if err := m.start(); err != nil {
		m.Stop()
		return nil, err
	}
	return m, nil
}

func (m *MinIO) start() error {
	proc, err := startProcess("MinIO", filepath.Join(m.dir, "minio.log"), nil, m.env, m.bin, m.args...)
	if err != nil {
		return err
	}
	m.proc = proc
	return proc.waitReady(func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.Endpoint+"/minio/health/cluster", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health: %s", resp.Status)
		}
		return nil
	})
}

// Kill ends the server at once, as a crash or a pulled cable would: an
// outage for whoever uses it, until Restart. Only for a server of the
// test's own (StartMinIO), never the shared one.
func (m *MinIO) Kill() { m.proc.kill() }

// Restart starts a killed server again on the same address and data.
func (m *MinIO) Restart() error { return m.start() }

// Env is the standard AWS environment pointing at this server, for child
// processes and for the SDK's default credential chain.
func (m *MinIO) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + m.AccessKey, "AWS_SECRET_ACCESS_KEY=" + m.SecretKey,
		"AWS_REGION=" + m.Region, "AWS_ENDPOINT_URL=" + m.Endpoint}
}

// SetEnv sets Env for the duration of a test.
func (m *MinIO) SetEnv(t *testing.T) { setEnv(t, m.Env()) }

// setEnv sets KEY=VALUE pairs for the duration of a test.
func setEnv(t *testing.T, kvs []string) {
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Stop stops the server and removes its files.
func (m *MinIO) Stop() {
	if m.proc != nil {
		m.proc.stop(syscall.SIGTERM, 20*time.Second)
	}
	os.RemoveAll(m.dir)
}
