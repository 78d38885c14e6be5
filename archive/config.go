package archive

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"filippo.io/age"
)

// ConfigVersion is the repository layout version this build writes. It
// reads version 1 too: there chunks are objects of their own, named by the
// HMAC of their content, and backups cannot be added (see docs/format.md).
const ConfigVersion = 2

// Encryption modes recorded in the config.
const (
	EncryptionNone       = "none"
	EncryptionRecipients = "age-x25519" // objects encrypted to the listed public keys
	EncryptionWrappedKey = "age-passphrase"
)

// Config is the repository's config object. It is stored unencrypted (a
// backup host must read it to learn whom to encrypt to) and therefore holds
// public material only: never a private key or a passphrase.
type Config struct {
	Format      string    `json:"format"` // always "tidemark-repository"
	Version     int       `json:"version"`
	ID          string    `json:"id"`
	Created     time.Time `json:"created"`
	Compression string    `json:"compression"` // "zstd" or "none"
	Level       int       `json:"level"`
	Encryption  string    `json:"encryption"`
	// Recipients are the age public keys every object is encrypted to. In
	// passphrase mode this is the single repository key whose identity is
	// stored, wrapped by the passphrase, in the keys/passphrase object.
	Recipients []string `json:"recipients,omitempty"`
	// ChunkIDKey keys the HMAC that names chunks, so chunk names differ
	// between repositories (see docs/format.md for the privacy trade-off).
	ChunkIDKey string `json:"chunk_id_key"`
	// ChunkerPolynomial seeds content-defined chunking, per repository.
	ChunkerPolynomial uint64 `json:"chunker_polynomial"`
}

const configFormat = "tidemark-repository"

// ParseConfig decodes and validates a config payload. Unknown fields and
// unknown versions are refused: a reader must never guess at a format.
func ParseConfig(b []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: repository config: %v", ErrCorrupt, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: repository config: trailing data", ErrCorrupt)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) validate() error {
	if c.Format != configFormat {
		return fmt.Errorf("%w: not a Tidemark repository config (format %q)", ErrCorrupt, c.Format)
	}
	if c.Version != ConfigVersion && c.Version != 1 {
		return fmt.Errorf("%w: repository version %d (this build reads version %d)", ErrUnsupported, c.Version, ConfigVersion)
	}
	if c.ID == "" {
		return fmt.Errorf("%w: repository config has no id", ErrCorrupt)
	}
	switch c.Compression {
	case "zstd":
		if c.Level < 1 || c.Level > 4 {
			return fmt.Errorf("%w: zstd level %d out of range 1..4", ErrCorrupt, c.Level)
		}
	case "none":
	default:
		return fmt.Errorf("%w: compression %q", ErrUnsupported, c.Compression)
	}
	switch c.Encryption {
	case EncryptionNone:
		if len(c.Recipients) > 0 {
			return fmt.Errorf("%w: unencrypted repository lists recipients", ErrCorrupt)
		}
	case EncryptionRecipients, EncryptionWrappedKey:
		if len(c.Recipients) == 0 {
			return fmt.Errorf("%w: encrypted repository lists no recipients", ErrCorrupt)
		}
		if c.Encryption == EncryptionWrappedKey && len(c.Recipients) != 1 {
			return fmt.Errorf("%w: passphrase repository must list exactly one recipient", ErrCorrupt)
		}
		if _, err := c.ageRecipients(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: encryption %q", ErrUnsupported, c.Encryption)
	}
	if k, err := hex.DecodeString(c.ChunkIDKey); err != nil || len(k) != 32 {
		return fmt.Errorf("%w: chunk id key must be 32 bytes of hex", ErrCorrupt)
	}
	if c.ChunkerPolynomial == 0 {
		return fmt.Errorf("%w: chunker polynomial missing", ErrCorrupt)
	}
	return nil
}

func (c *Config) ageRecipients() ([]age.Recipient, error) {
	var rs []age.Recipient
	for _, s := range c.Recipients {
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, fmt.Errorf("%w: recipient %q: %v", ErrCorrupt, s, err)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

func (c *Config) chunkIDKey() []byte {
	k, _ := hex.DecodeString(c.ChunkIDKey) // validated on parse and init
	return k
}

func (c *Config) compressionCodec() uint8 {
	if c.Compression == "zstd" {
		return CompressZstd
	}
	return CompressNone
}

// ParseRecipients parses age X25519 public keys from flags or a recipients
// file's lines (blank lines and # comments ignored).
func ParseRecipients(lines []string) ([]string, error) {
	var out []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if _, err := age.ParseX25519Recipient(l); err != nil {
			return nil, fmt.Errorf("recipient %q: %w", l, err)
		}
		out = append(out, l)
	}
	return out, nil
}

// jsonMarshal is how JSON payloads (config, manifests) are written: indented,
// so a human reading a decrypted object can follow it.
func jsonMarshal(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode json: %w", err)
	}
	return append(b, '\n'), nil
}
