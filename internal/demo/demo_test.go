package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tidemark/tidemark/internal/testenv"
)

// TestDemoFromPrivateCheckout runs `make demo`'s program with the binary
// in a checkout only its owner can enter, as root's home is on a fresh
// machine: the restored server, running as postgres, must still find a
// tidemark it can run for restore_command.
func TestDemoFromPrivateCheckout(t *testing.T) {
	if _, err := os.Stat(filepath.Join(testenv.PostgresBinDir, "postgres")); err != nil {
		testenv.Unavailable(t, "PostgreSQL 15", err)
	}
	checkout := t.TempDir()
	if err := os.Chmod(checkout, 0o700); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(checkout, "bin", "tidemark")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/tidemark/tidemark/cmd/tidemark").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := run(context.Background(), bin); err != nil {
		t.Fatal(err)
	}
}
