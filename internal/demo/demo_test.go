package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/internal/testenv"
)

// TestDemoFromPrivateCheckout runs `make demo`'s program with the binary
// `make demo` builds (without the object stores' SDKs) in a checkout only
// its owner can enter, as root's home is on a fresh machine: the restored
// server, running as postgres, must still find a tidemark it can run for
// restore_command.
func TestDemoFromPrivateCheckout(t *testing.T) {
	if _, err := os.Stat(filepath.Join(testenv.PostgresBinDir, "postgres")); err != nil {
		testenv.Unavailable(t, "PostgreSQL 15", err)
	}
	checkout := t.TempDir()
	if err := os.Chmod(checkout, 0o700); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(checkout, "bin", "tidemark-demo")
	if out, err := exec.Command("go", "build", "-tags", "tidemark_nocloud", "-o", bin, "github.com/tidemark/tidemark/cmd/tidemark").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// That build refuses object stores clearly instead of failing oddly.
	out, err := exec.Command(bin, "init", "--repo", "s3://bucket/prefix", "--no-encryption").CombinedOutput()
	if code := exitOf(err); code != 2 || !strings.Contains(string(out), "without the object stores") {
		t.Fatalf("lean build on s3://: exit %d: %s", code, out)
	}
	if err := run(context.Background(), bin); err != nil {
		t.Fatal(err)
	}
}

func exitOf(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
