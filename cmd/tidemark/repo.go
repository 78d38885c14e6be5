package main

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/all"
)

// repoFlags are the flags that locate and open a repository.
type repoFlags struct {
	repo           string
	identityFile   string
	passphraseFile string
}

func (f *repoFlags) register(cmd *cobra.Command, needKeys bool) {
	cmd.Flags().StringVar(&f.repo, "repo", "", "repository URL: /path, file:///path, s3://bucket/prefix, gs://bucket/prefix,\n"+
		"azblob://container/prefix or https://ACCOUNT.blob.core.windows.net/container/prefix\n"+
		"(env TIDEMARK_REPO; store credentials come from the environment: see tidemark --help)")
	if needKeys {
		cmd.Flags().StringVar(&f.identityFile, "identity-file", "", "age identity file that opens an encrypted repository (env TIDEMARK_IDENTITY_FILE)")
		cmd.Flags().StringVar(&f.passphraseFile, "passphrase-file", "", "file holding the repository passphrase (env TIDEMARK_PASSPHRASE_FILE)")
	}
}

func (f *repoFlags) store(ctx context.Context) (archive.Store, error) {
	if f.repo == "" {
		return nil, usageErr(fmt.Errorf("--repo (or TIDEMARK_REPO) is required"))
	}
	return all.Open(ctx, f.repo)
}

// open opens the repository with whatever keys were given; read needs them.
func (f *repoFlags) open(ctx context.Context, read bool) (*archive.Repository, error) {
	s, err := f.store(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := f.keys()
	if err != nil {
		return nil, err
	}
	r, err := archive.Open(ctx, s, keys)
	if err != nil {
		return nil, err
	}
	if read && !r.CanRead() {
		return nil, archive.ErrNoIdentity
	}
	return r, nil
}

func (f *repoFlags) keys() (archive.Keys, error) {
	var k archive.Keys
	if f.identityFile != "" {
		ids, err := readIdentities(f.identityFile)
		if err != nil {
			return k, err
		}
		k.Identities = ids
	}
	if f.passphraseFile != "" {
		p, err := readPassphrase(f.passphraseFile)
		if err != nil {
			return k, err
		}
		k.Passphrase = p
	}
	return k, nil
}

func readIdentities(path string) ([]age.Identity, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	defer fh.Close()
	ids, err := age.ParseIdentities(fh)
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	return ids, nil
}

// readPassphrase reads a passphrase file, dropping one trailing newline as
// editors and `echo` add it.
func readPassphrase(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("passphrase file: %w", err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return nil, usageErr(fmt.Errorf("passphrase file %s is empty", path))
	}
	return b, nil
}
