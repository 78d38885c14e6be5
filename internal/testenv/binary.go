package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"testing"
)

var tidemarkBin shared[string]

// TidemarkBinary builds the tidemark command once per test process, for
// tests that run it as PostgreSQL's restore_command or kill it with -9. Its
// directory is readable by the server's OS user.
func TidemarkBinary(t testing.TB) string {
	t.Helper()
	p, err := tidemarkBin.get(func() (string, func(), error) {
		dir, err := os.MkdirTemp("", "tidemark-bin-")
		if err != nil {
			return "", nil, err
		}
		os.Chmod(dir, 0o755) // restore_command runs it as the postgres user
		bin := filepath.Join(dir, "tidemark")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/tidemark/tidemark/cmd/tidemark").CombinedOutput()
		if err != nil {
			return "", nil, fmt.Errorf("go build: %v\n%s", err, out)
		}
		return bin, func() { os.RemoveAll(dir) }, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
