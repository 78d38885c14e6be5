package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/archive"
	storeall "github.com/tidemark/tidemark/archive/store/all"
	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/jobs"
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

// ref is how the repository is named, for jobs that hand it on.
func (f *repoFlags) ref() engine.RepoRef {
	return engine.RepoRef{URL: f.repo, IdentityFile: f.identityFile, PassphraseFile: f.passphraseFile}
}

func (f *repoFlags) store(ctx context.Context) (archive.Store, error) {
	if f.repo == "" {
		return nil, usageErr(fmt.Errorf("--repo (or TIDEMARK_REPO) is required"))
	}
	return storeall.Open(ctx, f.repo)
}

// open opens the repository with whatever keys were given; read needs them.
func (f *repoFlags) open(ctx context.Context, read bool, log *slog.Logger) (*archive.Repository, error) {
	if f.repo == "" {
		return nil, usageErr(fmt.Errorf("--repo (or TIDEMARK_REPO) is required"))
	}
	return jobs.OpenRepo(ctx, f.ref(), read, log)
}
