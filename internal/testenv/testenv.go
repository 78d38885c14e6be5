// Package testenv starts throwaway, loopback-only servers (PostgreSQL,
// MariaDB, FerretDB, MinIO, fake-gcs-server, Azurite) on free ports in temporary directories, for tests,
// the demo and the benchmarks.
//
// Servers are started lazily, once per process, and shared by every test of a
// package. A package that uses them calls Main from its TestMain so the
// servers are stopped when the tests end; the processes are also bound to the
// test binary's life (Pdeathsig), so a crashed test leaves nothing running.
//
// When a server cannot start, Unavailable decides what the test does: under
// CI=true it fails (a skipped server test in CI is a hidden failure), locally
// it skips with a message naming the server and the reason.
//
// Making S3 buckets and Azure containers needs the cloud SDKs; that lives in
// the sub-package storeenv, so the engines' tests, which import testenv, do
// not link them.
package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Versions of the servers built from Go modules by `make deps`.
const (
	MinIOVersion    = "v0.0.0-20260212201848-7aac2a2c5b7c"
	FerretDBVersion = "v1.24.2"
	FakeGCSVersion  = "v1.56.1"
)

// AzuriteVersion is the npm package version `make deps` installs.
const AzuriteVersion = "3.37.0"

// CI reports whether we run under CI, where missing servers are failures.
func CI() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

// Unavailable reports that server could not be started: a failure under CI,
// a skip with the reason otherwise.
func Unavailable(t testing.TB, server string, err error) {
	t.Helper()
	msg := fmt.Sprintf("%s unavailable: %v (run `make deps`)", server, err)
	if CI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// CacheDir is where `make deps` puts binaries built from Go modules.
func CacheDir() string {
	if d := os.Getenv("TIDEMARK_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "tidemark-cache")
	}
	return filepath.Join(home, ".cache", "tidemark")
}

// CachedBinary returns the path of a binary built by `make deps`, or an error
// saying how to get it.
func CachedBinary(name, version string) (string, error) {
	p := filepath.Join(CacheDir(), name, version, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s %s not built at %s", name, version, p)
	}
	return p, nil
}

// FreePort asks the kernel for a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// registry of everything started in this process, stopped by Main/StopAll.
var (
	mu       sync.Mutex
	stoppers []func()
)

func registerStop(f func()) {
	mu.Lock()
	defer mu.Unlock()
	stoppers = append(stoppers, f)
}

// StopAll stops every server this process started, newest first.
func StopAll() {
	mu.Lock()
	fs := stoppers
	stoppers = nil
	mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// Main runs a package's tests and then stops the servers they started.
func Main(m *testing.M) {
	code := m.Run()
	StopAll()
	os.Exit(code)
}

// bindToParent makes cmd's process die with ours, so no server outlives a
// crashed test binary.
func bindToParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.SysProcAttr.Setpgid = true
}

// NewName is a fresh, unique name for a bucket or container of one test.
func NewName() string { return "tm-" + randomHex(6) }

// Create runs create, which makes a bucket or container and returns its
// name, with a deadline so a hung server fails the test instead of hanging it.
func Create(t testing.TB, create func(context.Context) (string, error)) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name, err := create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return name
}
