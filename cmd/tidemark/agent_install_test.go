package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/internal/testenv"
)

// TestAgentInstallSystemd: the unit runs the agent as a dedicated user,
// never as root, and systemd reads it without a complaint.
func TestAgentInstallSystemd(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "tidemark.yaml")
	os.WriteFile(config, []byte("databases: []\n"), 0o600)
	unit, _ := expect(t, 0, "agent", "install", "--systemd", "--config", config)
	for _, want := range []string{"\nUser=tidemark\n", "\nGroup=tidemark\n", "\nStateDirectory=tidemark\n", "useradd --system", "ExecStart="} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	if own, _ := expect(t, 0, "agent", "install", "--systemd", "--config", config, "--user", "backup"); !strings.Contains(own, "\nUser=backup\n") {
		t.Errorf("--user backup:\n%s", own)
	}
	expect(t, 2, "agent", "install", "--systemd", "--config", config, "--user", "")
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testenv.Unavailable(t, "systemd-analyze", err)
	}
	path := filepath.Join(dir, "tidemark-agent.service")
	os.WriteFile(path, []byte(unit), 0o644)
	// verify exits 0 on unknown keys too: any output is a complaint.
	if out, err := exec.Command(analyze, "verify", path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
