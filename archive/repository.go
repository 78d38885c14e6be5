package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/restic/chunker"
)

// Object names of the repository's own bookkeeping.
const (
	configName     = "config"
	wrappedKeyName = "keys/passphrase"
	maxSmallObject = 256 << 20 // cap for objects read whole (config, manifests, indexes)
)

// Repository is one database cluster's history in a Store.
type Repository struct {
	store  Store
	cfg    *Config
	codec  *Codec // big objects: WAL segments, manifests (parallel zstd)
	chunks *Codec // chunk objects: parallelism comes from the chunk workers
	meta   *Codec // unencrypted bookkeeping a write-only host reads back (Kind.plaintextAllowed)

	locMu sync.Mutex
	locs  map[ChunkID]indexEntry // where chunks live, loaded on first read
}

// InitOptions configure a new repository.
type InitOptions struct {
	Recipients  []string // age X25519 public keys; empty with no Passphrase means no encryption
	Passphrase  []byte   // passphrase mode: a repository key is generated and wrapped with it
	NoEncrypt   bool     // must be set explicitly to create an unencrypted repository
	Compression string   // "zstd" (default) or "none"
	Level       int      // zstd level 1..4, default 1
}

// Keys open an existing repository's objects. Both may be empty on a host
// that only writes (it needs the public keys in the config, nothing else).
type Keys struct {
	Identities []age.Identity
	Passphrase []byte
	// Warnings are what LoadKeys found unwise about the key files (readable
	// by every user), for the caller to log.
	Warnings []string
}

// Init creates a repository in an empty store. A store that holds anything
// is refused: one repository holds one cluster's history.
func Init(ctx context.Context, store Store, o InitOptions) (*Repository, error) {
	var first string
	stop := errors.New("found")
	err := store.List(ctx, "", "", func(oi ObjectInfo) error { first = oi.Name; return stop })
	if err != nil && !errors.Is(err, stop) {
		return nil, fmt.Errorf("init %s: %w", store.Location(), err)
	}
	if first != "" {
		return nil, fmt.Errorf("init %s: location is not empty (found %q); a repository needs an empty location", store.Location(), first)
	}
	cfg, wrapped, err := newConfig(o)
	if err != nil {
		return nil, fmt.Errorf("init %s: %w", store.Location(), err)
	}
	r, err := newRepository(store, cfg, nil, false)
	if err != nil {
		return nil, err
	}
	if wrapped != nil {
		// Written before the config: a config that names a passphrase key
		// never exists without the key.
		if err := r.putPassphraseKey(ctx, wrapped, o.Passphrase); err != nil {
			return nil, fmt.Errorf("init %s: %w", store.Location(), err)
		}
	}
	if err := r.writeConfig(ctx); err != nil {
		return nil, fmt.Errorf("init %s: %w", store.Location(), err)
	}
	return r, nil
}

func newConfig(o InitOptions) (*Config, *age.X25519Identity, error) {
	cfg := &Config{Format: configFormat, Version: ConfigVersion, Created: time.Now().UTC(),
		Compression: o.Compression, Level: o.Level}
	if cfg.Compression == "" {
		cfg.Compression = "zstd"
	}
	if cfg.Level == 0 && cfg.Compression == "zstd" {
		cfg.Level = 1
	}
	var id [16]byte
	rand.Read(id[:])
	cfg.ID = hex.EncodeToString(id[:])
	var key [32]byte
	rand.Read(key[:])
	cfg.ChunkIDKey = hex.EncodeToString(key[:])
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		return nil, nil, fmt.Errorf("chunker polynomial: %w", err)
	}
	cfg.ChunkerPolynomial = uint64(pol)

	modes := 0
	if len(o.Recipients) > 0 {
		modes++
	}
	if len(o.Passphrase) > 0 {
		modes++
	}
	if o.NoEncrypt {
		modes++
	}
	if modes != 1 {
		return nil, nil, errors.New("choose exactly one of: recipients, a passphrase, or no encryption (explicitly)")
	}
	var wrapped *age.X25519Identity
	switch {
	case o.NoEncrypt:
		cfg.Encryption = EncryptionNone
	case len(o.Recipients) > 0:
		cfg.Encryption = EncryptionRecipients
		cfg.Recipients = o.Recipients
	default:
		wrapped, err = age.GenerateX25519Identity()
		if err != nil {
			return nil, nil, fmt.Errorf("generate repository key: %w", err)
		}
		cfg.Encryption = EncryptionWrappedKey
		cfg.Recipients = []string{wrapped.Recipient().String()}
	}
	if err := cfg.validate(); err != nil {
		return nil, nil, err
	}
	return cfg, wrapped, nil
}

func newRepository(store Store, cfg *Config, ids []age.Identity, checked bool) (*Repository, error) {
	rs, err := cfg.ageRecipients()
	if err != nil {
		return nil, err
	}
	o := CodecOptions{Compression: cfg.compressionCodec(), Level: cfg.Level, Recipients: rs, Identities: ids, IdentitiesChecked: checked}
	if cfg.Compression == "none" {
		o.Level = 0
	}
	codec, err := NewCodec(o)
	if err != nil {
		return nil, err
	}
	o.Concurrency = 1
	chunks, err := NewCodec(o)
	if err != nil {
		return nil, err
	}
	meta, err := NewCodec(CodecOptions{Compression: o.Compression, Level: o.Level, Concurrency: 1})
	if err != nil {
		return nil, err
	}
	return &Repository{store: store, cfg: cfg, codec: codec, chunks: chunks, meta: meta}, nil
}

// Open opens the repository in store with the given keys.
func Open(ctx context.Context, store Store, keys Keys) (*Repository, error) {
	plain, _ := NewCodec(CodecOptions{})
	b, err := readSmall(ctx, store, plain, configName, KindConfig)
	if errors.Is(err, ErrNotExist) {
		return nil, fmt.Errorf("open repository %s: no repository here (run `tidemark init` first): %w", store.Location(), err)
	}
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", store.Location(), err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", store.Location(), err)
	}
	ids, checked, err := resolveIdentities(ctx, store, cfg, keys)
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", store.Location(), err)
	}
	return newRepository(store, cfg, ids, checked)
}

// resolveIdentities turns the keys a user gave into identities for this
// repository, failing early and clearly when they cannot open it. checked
// reports that the identities are known to match the repository's keys.
func resolveIdentities(ctx context.Context, store Store, cfg *Config, keys Keys) (ids []age.Identity, checked bool, err error) {
	switch cfg.Encryption {
	case EncryptionNone:
		return nil, false, nil
	case EncryptionWrappedKey:
		if len(keys.Passphrase) == 0 {
			return keys.Identities, false, nil
		}
		ids, err := unwrapPassphraseKey(ctx, store, cfg, keys.Passphrase)
		return ids, err == nil, err
	}
	if len(keys.Identities) == 0 {
		if len(keys.Passphrase) > 0 {
			return nil, false, fmt.Errorf("a passphrase was given, but this repository is encrypted to age recipients, not a passphrase: pass --identity-file with the identity of one of %s: %w",
				strings.Join(cfg.Recipients, ", "), ErrKeyFile)
		}
		return nil, false, nil
	}
	for _, id := range keys.Identities {
		x, ok := id.(*age.X25519Identity)
		if !ok {
			return keys.Identities, false, nil // plugin identities: let decryption decide
		}
		for _, r := range cfg.Recipients {
			if x.Recipient().String() == r {
				return keys.Identities, true, nil
			}
		}
	}
	return nil, false, fmt.Errorf("%w: the identity file's keys match none of the repository's recipients (%s)", ErrWrongIdentity, strings.Join(cfg.Recipients, ", "))
}

func (r *Repository) writeConfig(ctx context.Context) error {
	b, err := jsonMarshal(r.cfg)
	if err != nil {
		return err
	}
	plain, _ := NewCodec(CodecOptions{})
	_, err = putWith(ctx, r.store, plain, configName, KindConfig, bytes.NewReader(b))
	return err
}

func (r *Repository) putPassphraseKey(ctx context.Context, id *age.X25519Identity, passphrase []byte) error {
	sr, err := age.NewScryptRecipient(string(passphrase))
	if err != nil {
		return fmt.Errorf("passphrase: %w", err)
	}
	c, err := NewCodec(CodecOptions{Recipients: []age.Recipient{sr}})
	if err != nil {
		return err
	}
	_, err = putWith(ctx, r.store, c, wrappedKeyName, KindKey, strings.NewReader(id.String()))
	return err
}

func unwrapPassphraseKey(ctx context.Context, store Store, cfg *Config, passphrase []byte) ([]age.Identity, error) {
	si, err := age.NewScryptIdentity(string(passphrase))
	if err != nil {
		return nil, fmt.Errorf("passphrase: %w", err)
	}
	c, _ := NewCodec(CodecOptions{Identities: []age.Identity{si}})
	b, err := readSmall(ctx, store, c, wrappedKeyName, KindKey)
	if err != nil {
		if errors.Is(err, ErrWrongIdentity) {
			return nil, fmt.Errorf("%w: incorrect passphrase", ErrWrongIdentity)
		}
		return nil, err
	}
	id, err := age.ParseX25519Identity(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%w: repository key: %v", ErrCorrupt, err)
	}
	if id.Recipient().String() != cfg.Recipients[0] {
		return nil, fmt.Errorf("%w: repository key does not match the config's recipient", ErrCorrupt)
	}
	return []age.Identity{id}, nil
}

// Config returns the repository's config (read-only).
func (r *Repository) Config() Config { return *r.cfg }

// Store returns the store the repository lives in.
func (r *Repository) Store() Store { return r.store }

// CanRead reports whether this repository handle can open encrypted objects.
func (r *Repository) CanRead() bool {
	return r.cfg.Encryption == EncryptionNone || r.codec.CanDecrypt()
}

// PutStat describes a sealed object.
type PutStat struct {
	Plain  int64    // plaintext bytes
	Stored int64    // bytes in the store
	SHA256 [32]byte // of the plaintext
}

// Put seals plaintext from src as an object of kind under name.
func (r *Repository) Put(ctx context.Context, name string, kind Kind, src io.Reader) (PutStat, error) {
	return putWith(ctx, r.store, r.codecFor(kind), name, kind, src)
}

func (r *Repository) codecFor(kind Kind) *Codec {
	if kind.plaintextAllowed() {
		return r.meta
	}
	return r.codec
}

func putWith(ctx context.Context, store Store, c *Codec, name string, kind Kind, src io.Reader) (PutStat, error) {
	pr, pw := io.Pipe()
	counter := &countingReader{r: pr}
	var st PutStat
	go func() {
		ow, err := c.NewWriter(pw, kind)
		if err == nil {
			_, err = io.Copy(ow, src)
			if cerr := ow.Close(); err == nil {
				err = cerr
			}
			st.Plain, st.SHA256 = int64(ow.Len()), ow.Sum()
		}
		pw.CloseWithError(err)
	}()
	err := store.Put(ctx, name, counter, -1)
	pr.CloseWithError(errors.New("store put ended")) // unblocks the writer goroutine if Put stopped early
	if err != nil {
		return PutStat{}, fmt.Errorf("put %s %s: %w", kind, name, err)
	}
	st.Stored = counter.n
	return st, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Get opens the object name, which must be of kind. The reader verifies as
// it goes; every error, including one at the end of the stream, names the
// object.
func (r *Repository) Get(ctx context.Context, name string, kind Kind) (io.ReadCloser, error) {
	return getWith(ctx, r.store, r.codecFor(kind), name, kind)
}

func getWith(ctx context.Context, store Store, c *Codec, name string, kind Kind) (io.ReadCloser, error) {
	rc, err := store.Get(ctx, name, 0, -1)
	if err != nil {
		return nil, fmt.Errorf("get %s %s: %w", kind, name, err)
	}
	or, err := c.NewReader(rc, kind)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("%s %s: %w", kind, name, err)
	}
	return &namedReader{name: name, kind: kind, or: or, raw: rc}, nil
}

type namedReader struct {
	name string
	kind Kind
	or   *ObjectReader
	raw  io.Closer
}

func (n *namedReader) Read(p []byte) (int, error) {
	k, err := n.or.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%s %s: %w", n.kind, n.name, err)
	}
	return k, err
}

func (n *namedReader) Close() error {
	n.or.Close()
	return n.raw.Close()
}

// ReadAll reads a small object whole.
func (r *Repository) ReadAll(ctx context.Context, name string, kind Kind) ([]byte, error) {
	return readSmall(ctx, r.store, r.codecFor(kind), name, kind)
}

func readSmall(ctx context.Context, store Store, c *Codec, name string, kind Kind) ([]byte, error) {
	rc, err := getWith(ctx, store, c, name, kind)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxSmallObject+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSmallObject {
		return nil, fmt.Errorf("%s %s: larger than %d bytes", kind, name, maxSmallObject)
	}
	return b, nil
}
