package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/archive"
)

func (a *app) initCmd() *cobra.Command {
	var (
		rf             repoFlags
		recipients     []string
		recipientFile  string
		passphraseFile string
		noEncryption   bool
		compression    string
		level          int
		asJSON         bool
	)
	cmd := &cobra.Command{
		Use:   "init --repo URL (--recipient age1… | --recipient-file F | --passphrase-file F | --no-encryption)",
		Short: "Create a repository in an empty location",
		Long: `Create a repository. One repository holds one database cluster's history;
a location that already holds anything is refused.

Encryption (choose one):
  --recipient age1…      encrypt to these age public keys; backup hosts need
                         only the public key, restores need the identity file
  --recipient-file F     the same, keys read one per line from F
  --passphrase-file F    a repository key wrapped with the passphrase in F
  --no-encryption        store plaintext (compressed and checksummed)`,
		Example: `  age-keygen -o restore.key          # keep this file off the database host
  tidemark init --repo s3://backups/pg-main --recipient "$(age-keygen -y restore.key)"
  tidemark init --repo /var/lib/tidemark/pg --passphrase-file /etc/tidemark/pass`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			o := archive.InitOptions{NoEncrypt: noEncryption, Compression: compression, Level: level}
			lines := append([]string(nil), recipients...)
			if recipientFile != "" {
				b, err := os.ReadFile(recipientFile)
				if err != nil {
					return fmt.Errorf("recipient file: %w", err)
				}
				lines = append(lines, strings.Split(string(b), "\n")...)
			}
			rs, err := archive.ParseRecipients(lines)
			if err != nil {
				return usageErr(err)
			}
			if (recipientFile != "" || len(recipients) > 0) && len(rs) == 0 {
				return usageErr(fmt.Errorf("no recipients found in --recipient/--recipient-file"))
			}
			o.Recipients = rs
			if passphraseFile != "" {
				k, err := archive.LoadKeys("", passphraseFile)
				if err != nil {
					return err
				}
				o.Passphrase = k.Passphrase
			}
			chosen := 0
			for _, b := range []bool{len(rs) > 0, len(o.Passphrase) > 0, noEncryption} {
				if b {
					chosen++
				}
			}
			if chosen != 1 {
				return usageErr(fmt.Errorf("choose exactly one of --recipient/--recipient-file, --passphrase-file or --no-encryption"))
			}
			s, err := rf.store(ctx)
			if err != nil {
				return err
			}
			r, err := archive.Init(ctx, s, o)
			if err != nil {
				return err
			}
			cfg := r.Config()
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(map[string]any{"repository": s.Location(), "id": cfg.ID,
					"encryption": cfg.Encryption, "recipients": cfg.Recipients, "compression": cfg.Compression})
			}
			fmt.Fprintf(a.stdout, "created repository %s\n  id          %s\n  encryption  %s\n  compression %s (level %d)\n",
				s.Location(), cfg.ID, cfg.Encryption, cfg.Compression, cfg.Level)
			for _, rc := range cfg.Recipients {
				fmt.Fprintf(a.stdout, "  recipient   %s\n", rc)
			}
			return nil
		},
	}
	rf.register(cmd, false)
	f := cmd.Flags()
	f.StringArrayVar(&recipients, "recipient", nil, "age X25519 public key to encrypt to (repeatable)")
	f.StringVar(&recipientFile, "recipient-file", "", "file of age public keys, one per line")
	f.StringVar(&passphraseFile, "passphrase-file", "", "file holding a passphrase that wraps the repository key")
	f.BoolVar(&noEncryption, "no-encryption", false, "store objects unencrypted (must be chosen explicitly)")
	f.StringVar(&compression, "compression", "zstd", "compression: zstd or none")
	f.IntVar(&level, "level", 1, "zstd level: 1 fastest … 4 best, literals always entropy-coded (1 is the default: it stores about what C zstd -1 does, hex and digit text included; 2 stores 4–16% less of WAL, binlogs and BSON at 1.1–3.7× the CPU; docs/compression.md)")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
