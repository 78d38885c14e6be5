package archive

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"filippo.io/age"
)

// ErrKeyFile: a key file given to open a repository cannot be used
// (missing, unreadable, not an age identity, an empty passphrase). It is
// a key problem, like a wrong key, not a general failure.
var ErrKeyFile = errors.New("unusable key file")

// LoadKeys reads the keys that open an encrypted repository from files:
// an age identity file and/or a passphrase file ("" for none). Keys never
// come from arguments or the environment's values themselves.
func LoadKeys(identityFile, passphraseFile string) (Keys, error) {
	var k Keys
	if identityFile != "" {
		ids, err := readIdentities(identityFile)
		if err != nil {
			return k, err
		}
		k.Identities = ids
	}
	if passphraseFile != "" {
		p, err := readPassphrase(passphraseFile)
		if err != nil {
			return k, err
		}
		k.Passphrase = p
	}
	for _, f := range []string{identityFile, passphraseFile} {
		if w := exposed(f); w != "" {
			k.Warnings = append(k.Warnings, w)
		}
	}
	return k, nil
}

// exposed warns about a key file every user of the host can read. Group
// read is fine: the database's OS user may need it for restore_command.
func exposed(path string) string {
	if path == "" {
		return ""
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o004 == 0 {
		return ""
	}
	return fmt.Sprintf("key file %s is readable by every user of this host (mode %04o): chmod o-rwx it (600, or 640 for a group the database's OS user is in)",
		path, fi.Mode().Perm())
}

func readIdentities(path string) ([]age.Identity, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: identity file: %w", ErrKeyFile, err)
	}
	defer fh.Close()
	ids, err := age.ParseIdentities(fh)
	if err != nil {
		return nil, fmt.Errorf("%w: identity file %s: %w", ErrKeyFile, path, err)
	}
	return ids, nil
}

// readPassphrase reads a passphrase file, dropping one trailing newline as
// editors and `echo` add it.
func readPassphrase(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: passphrase file: %w", ErrKeyFile, err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: passphrase file %s is empty", ErrKeyFile, path)
	}
	return b, nil
}
