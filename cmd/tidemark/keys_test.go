package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeyFileErrors: every key problem exits 4 with a message that says
// what to do, and a key file every user can read is warned about.
func TestKeyFileErrors(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	key, id := keyFile(t)
	expect(t, 0, "init", "--repo", repo, "--recipient", id.Recipient().String())
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("not an age identity\n"), 0o600)
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("secret\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--identity-file", filepath.Join(dir, "missing")}, "missing"},
		{[]string{"--identity-file", garbage}, "garbage"},
		{[]string{"--passphrase-file", pass}, "encrypted to age recipients, not a passphrase"},
		{nil, "no identity was given"},
	} {
		_, errs := expect(t, exitKey, append([]string{"verify", "--repo", repo}, c.args...)...)
		if !strings.Contains(errs, c.want) {
			t.Errorf("verify %v: %s", c.args, errs)
		}
	}
	_, errs := expect(t, 0, "verify", "--repo", repo, "--identity-file", key)
	if strings.Contains(errs, "readable by every user") {
		t.Fatalf("warned about a private key file: %s", errs)
	}
	os.Chmod(key, 0o644)
	_, errs = expect(t, 0, "verify", "--repo", repo, "--identity-file", key)
	if !strings.Contains(errs, "readable by every user") || !strings.Contains(errs, key) {
		t.Fatalf("no warning about a world-readable key file: %s", errs)
	}
}
