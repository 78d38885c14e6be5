// Package file is the local-disk store: objects as files under a root
// directory, made write-once and crash-safe with hard links and fsyncs.
package file

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/internal/storeutil"
)

// Store keeps objects as files under a root directory.
//
// Durability: an object is written to a temporary file beside its final name,
// fsynced, then hard-linked to the final name and the directory fsynced. The
// link (unlike rename) fails when the name exists, which makes Put write-once
// atomically even with concurrent writers, and a crash at any point leaves
// either nothing or the complete object under the final name.
type Store struct {
	root string
	bufs sync.Pool // *[]byte of copyBufSize, see writeTemp
}

// copyBufSize is what writeTemp copies at a time. A pack reaches Put
// through a pipe as it is sealed; io.Copy's 32 KiB would make each MiB 32
// hand-offs between the sealing goroutine and this one (each waiting for a
// processor on a busy machine) and 32 write calls.
const copyBufSize = 1 << 20

var _ archive.Store = (*Store)(nil)

// Objects are group-readable (as pgBackRest's repositories are) so that a
// restore running as the database's OS user can read what a streamer running
// as another user of the same group wrote. Contents are encrypted anyway
// unless the repository was made with --no-encryption.
const (
	fileMode = 0o640
	dirMode  = 0o750
)

// Open opens (creating if needed) a file store rooted at dir.
func Open(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("file store %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, dirMode); err != nil {
		return nil, fmt.Errorf("file store %s: %w", abs, err)
	}
	return &Store{root: abs}, nil
}

// Location implements archive.Store.
func (s *Store) Location() string { return "file://" + s.root }

func (s *Store) path(name string) (string, error) {
	if !archive.ValidName(name) {
		return "", fmt.Errorf("invalid object name %q", name)
	}
	return filepath.Join(s.root, filepath.FromSlash(name)), nil
}

// Put implements archive.Store.
func (s *Store) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	p, err := s.path(name)
	if err != nil {
		return fmt.Errorf("file put: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("file put %s: %w", name, err)
	}
	if err := s.mkdirs(filepath.Dir(p)); err != nil {
		return fmt.Errorf("file put %s: %w", name, err)
	}
	tmp, err := s.writeTemp(ctx, p, r)
	if err != nil {
		return fmt.Errorf("file put %s: %w", name, err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, p); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("file put %s: %w", name, archive.ErrExist)
		}
		return fmt.Errorf("file put %s: %w", name, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("file put %s: %w", name, err)
	}
	return nil
}

// writeTemp streams r into a fsynced temporary file next to p.
func (s *Store) writeTemp(ctx context.Context, p string, r io.Reader) (string, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(p), tempPrefix+filepath.Base(p)+"-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return "", err
	}
	buf, _ := s.bufs.Get().(*[]byte)
	if buf == nil {
		b := make([]byte, copyBufSize)
		buf = &b
	}
	// Only Write: *os.File's ReadFrom would copy through its own 32 KiB.
	_, err = io.CopyBuffer(struct{ io.Writer }{f}, storeutil.ContextReader{Ctx: ctx, R: r}, *buf)
	s.bufs.Put(buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// mkdirs creates dir and its missing parents, fsyncing each parent whose
// entries changed so the new directories survive a crash.
func (s *Store) mkdirs(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir && strings.HasPrefix(parent, s.root) {
		if err := s.mkdirs(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// Get implements archive.Store.
func (s *Store) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	p, err := s.path(name)
	if err != nil {
		return nil, fmt.Errorf("file get: %w", err)
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("file get %s: %w", name, archive.ErrNotExist)
		}
		return nil, fmt.Errorf("file get %s: %w", name, err)
	}
	if off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("file get %s at %d: %w", name, off, err)
		}
	}
	if length < 0 {
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, length), f}, nil
}

// Stat implements archive.Store.
func (s *Store) Stat(ctx context.Context, name string) (archive.ObjectInfo, error) {
	p, err := s.path(name)
	if err != nil {
		return archive.ObjectInfo{}, fmt.Errorf("file stat: %w", err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return archive.ObjectInfo{}, fmt.Errorf("file stat %s: %w", name, archive.ErrNotExist)
		}
		return archive.ObjectInfo{}, fmt.Errorf("file stat %s: %w", name, err)
	}
	return archive.ObjectInfo{Name: name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Delete implements archive.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	p, err := s.path(name)
	if err != nil {
		return fmt.Errorf("file delete: %w", err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file delete %s: %w", name, err)
	}
	return nil
}

// List implements archive.Store. Directory entries are visited sorted by
// their name plus "/" for directories, which yields exactly the lexical
// order of full object names without collecting them all first.
func (s *Store) List(ctx context.Context, prefix, startAfter string, fn func(archive.ObjectInfo) error) error {
	if err := s.list(ctx, s.root, "", prefix, startAfter, fn); err != nil {
		return fmt.Errorf("file list %q: %w", prefix, err)
	}
	return nil
}

func (s *Store) list(ctx context.Context, dir, rel, prefix, startAfter string, fn func(archive.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	keys := make([]string, len(entries))
	for i, e := range entries {
		keys[i] = rel + e.Name()
		if e.IsDir() {
			keys[i] += "/"
		}
	}
	sort.Sort(byKey{keys, entries})
	for i, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue // temporary files of in-flight puts
		}
		key := keys[i]
		if e.IsDir() {
			// Descend only where names can still match the prefix and follow startAfter.
			if !strings.HasPrefix(key, prefix) && !strings.HasPrefix(prefix, key) {
				continue
			}
			if key < startAfter && !strings.HasPrefix(startAfter, key) {
				continue
			}
			if err := s.list(ctx, filepath.Join(dir, e.Name()), key, prefix, startAfter, fn); err != nil {
				return err
			}
			continue
		}
		if !strings.HasPrefix(key, prefix) || key <= startAfter {
			continue
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted while listing
			}
			return err
		}
		if err := fn(archive.ObjectInfo{Name: key, Size: info.Size(), ModTime: info.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

type byKey struct {
	keys    []string
	entries []os.DirEntry
}

func (b byKey) Len() int           { return len(b.keys) }
func (b byKey) Less(i, j int) bool { return b.keys[i] < b.keys[j] }
func (b byKey) Swap(i, j int) {
	b.keys[i], b.keys[j] = b.keys[j], b.keys[i]
	b.entries[i], b.entries[j] = b.entries[j], b.entries[i]
}

// tempPrefix starts the name of the temporary file a Put writes before
// linking it into place.
const tempPrefix = ".tmp-"

var _ archive.TempFileStore = (*Store)(nil)

// TempFiles implements archive.TempFileStore: the temporary files of puts
// in progress, or of puts whose process was killed before it removed them.
func (s *Store) TempFiles(ctx context.Context, fn func(archive.ObjectInfo) error) error {
	return filepath.WalkDir(s.root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.IsDir() || !strings.HasPrefix(e.Name(), tempPrefix) {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil // finished meanwhile
		}
		rel, _ := filepath.Rel(s.root, p)
		return fn(archive.ObjectInfo{Name: filepath.ToSlash(rel), Size: info.Size(), ModTime: info.ModTime()})
	})
}

// DeleteTempFile implements archive.TempFileStore.
func (s *Store) DeleteTempFile(_ context.Context, name string) error {
	dir, base := filepath.Split(filepath.FromSlash(name))
	if !strings.HasPrefix(base, tempPrefix) || (dir != "" && !archive.ValidName(strings.TrimSuffix(filepath.ToSlash(dir), "/"))) {
		return fmt.Errorf("file delete temporary file %q: not one", name)
	}
	if err := os.Remove(filepath.Join(s.root, dir, base)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file delete temporary file %s: %w", name, err)
	}
	return nil
}
