// Package retry is the store decorator that outlasts outages: every
// operation of the store it wraps is repeated with backoff while it fails
// in a way that can pass (a refused connection, a reset, a timeout, a
// service answering 5xx or "slow down"), for a bounded time, and then fails
// with a message of Tidemark's own naming the store, the operation and how
// long it tried. A download that breaks mid-way resumes where it stopped; a
// listing resumes after the last name it delivered. archive/store/all wraps
// every store it opens in it, so no store has to do this itself.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/internal/storeutil"
)

// Options tune the retries. The zero value is what the CLI and the agent use.
type Options struct {
	// Budget is how long one operation keeps trying (default 3 minutes): far
	// more than a store restart or a network blip, and bounded, so a store
	// that is gone fails the job rather than hanging it.
	Budget time.Duration
	// Initial and Max bound the backoff between attempts (defaults 500ms
	// and 5s): it doubles after each failure, and stays short so work
	// resumes within seconds of the store's return.
	Initial, Max time.Duration
	// Now and Sleep replace the clock (tests).
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// OnRetry, when set, hears of each failed attempt that will be retried.
	OnRetry func(op, name string, err error, wait time.Duration)
}

func (o *Options) defaults() {
	if o.Budget <= 0 {
		o.Budget = 3 * time.Minute
	}
	if o.Initial <= 0 {
		o.Initial = 500 * time.Millisecond
	}
	if o.Max < o.Initial {
		o.Max = max(5*time.Second, o.Initial)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
}

// Store wraps a store with retries.
type Store struct {
	inner archive.Store
	o     Options
}

var _ archive.Store = (*Store)(nil)

// Wrap returns s with retries.
func Wrap(s archive.Store, o Options) *Store {
	o.defaults()
	return &Store{inner: s, o: o}
}

// Unwrap returns the wrapped store, for what only it can do (see
// archive.TempFileStore).
func (s *Store) Unwrap() archive.Store { return s.inner }

// Location implements archive.Store.
func (s *Store) Location() string { return s.inner.Location() }

// ErrGaveUp marks an operation that failed on every attempt within the
// budget; the store's last error follows in the chain.
var ErrGaveUp = errors.New("store unreachable")

// do runs op until it succeeds, fails in a way retrying cannot fix, ctx
// ends, or the budget is spent.
func (s *Store) do(ctx context.Context, op, name string, fn func(attempt int) error) error {
	start := s.o.Now()
	wait := s.o.Initial
	for attempt := 1; ; attempt++ {
		err := fn(attempt)
		if err == nil || !Transient(err) || ctx.Err() != nil {
			return err
		}
		spent := s.o.Now().Sub(start)
		if spent+wait > s.o.Budget {
			return fmt.Errorf("%w: %s: %s %s failed %d times over %s, giving up: %w", ErrGaveUp, s.inner.Location(), op, name,
				attempt, spent.Round(time.Second), err)
		}
		if s.o.OnRetry != nil {
			s.o.OnRetry(op, name, err, wait)
		}
		if serr := s.o.Sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%s %s: %w (while waiting to retry after: %v)", op, name, serr, err)
		}
		wait = min(2*wait, s.o.Max)
	}
}

// Transient reports whether err may pass if the operation is repeated: a
// network failure or a service saying it is unavailable. Contract answers
// (not found, exists), bad names and the caller's own cancellation never
// are, nor is anything unrecognised (a full disk, a permission refused).
func Transient(err error) bool {
	var (
		op      *net.OpError
		dns     *net.DNSError
		timeout interface{ Timeout() bool }
	)
	switch {
	case err == nil, errors.Is(err, archive.ErrNotExist), errors.Is(err, archive.ErrExist), errors.Is(err, archive.ErrBadName),
		errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, archive.ErrUnavailable):
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.As(err, &op), errors.As(err, &dns):
		return true
	case errors.As(err, &timeout) && timeout.Timeout():
		return true
	}
	return false
}

// Put implements archive.Store. The data is kept (in memory, spilling to a
// temporary file when large) as the first attempt streams it, so a retry
// can send it again; every attempt carries one put token, so an attempt
// refused because an earlier one landed still succeeds.
func (s *Store) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	ctx = storeutil.WithPutToken(ctx, storeutil.RandomToken())
	sp := newSpool()
	defer sp.close()
	return s.do(ctx, "put", name, func(attempt int) error {
		if attempt == 1 {
			src := &storeutil.ReadErrReader{R: io.TeeReader(r, sp)}
			err := s.inner.Put(ctx, name, src, size)
			if src.Err != nil || sp.err != nil {
				return errors.Join(err, src.Err, sp.err) // the data broke, not the store: not retried
			}
			if err != nil && Transient(err) {
				// Keep the rest of the data for the next attempt.
				if _, cerr := io.Copy(sp, r); cerr != nil {
					return fmt.Errorf("%w (and reading the rest of the data failed: %v)", err, cerr)
				}
			}
			return err
		}
		rd, err := sp.reader()
		if err != nil {
			return err
		}
		return s.inner.Put(ctx, name, rd, sp.n)
	})
}

// Get implements archive.Store; the reader resumes a broken download.
func (s *Store) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := s.do(ctx, "get", name, func(int) error {
		var err error
		rc, err = s.inner.Get(ctx, name, off, length)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &resumer{s: s, ctx: ctx, name: name, off: off, left: length, rc: rc}, nil
}

// resumer reads an object and, when the connection breaks, opens it again
// where the reading stopped.
type resumer struct {
	s    *Store
	ctx  context.Context
	name string
	off  int64 // next offset to read
	left int64 // bytes still wanted; < 0: to the end
	rc   io.ReadCloser
}

func (r *resumer) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if r.left > 0 && int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.rc.Read(p)
	r.off += int64(n)
	if r.left > 0 {
		r.left -= int64(n)
	}
	if err == nil || err == io.EOF || !Transient(err) || r.ctx.Err() != nil {
		return n, err
	}
	r.rc.Close()
	rerr := r.s.do(r.ctx, "get (resume)", r.name, func(int) error {
		var err error
		r.rc, err = r.s.inner.Get(r.ctx, r.name, r.off, r.left)
		return err
	})
	if rerr != nil {
		r.rc = io.NopCloser(errReader{rerr})
		return n, fmt.Errorf("resume %s at %d after %v: %w", r.name, r.off, err, rerr)
	}
	return n, nil
}

func (r *resumer) Close() error { return r.rc.Close() }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// List implements archive.Store: a listing that fails part-way resumes
// after the last name it delivered.
func (s *Store) List(ctx context.Context, prefix, startAfter string, fn func(archive.ObjectInfo) error) error {
	last := startAfter
	var fnErr error
	err := s.do(ctx, "list", prefix+"*", func(int) error {
		err := s.inner.List(ctx, prefix, last, func(o archive.ObjectInfo) error {
			if fnErr = fn(o); fnErr != nil {
				return fnErr
			}
			last = o.Name
			return nil
		})
		if fnErr != nil {
			return errStopped // the caller's own error: never retried
		}
		return err
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

var errStopped = errors.New("listing stopped by its caller")

// Stat implements archive.Store.
func (s *Store) Stat(ctx context.Context, name string) (archive.ObjectInfo, error) {
	var oi archive.ObjectInfo
	err := s.do(ctx, "stat", name, func(int) error {
		var err error
		oi, err = s.inner.Stat(ctx, name)
		return err
	})
	return oi, err
}

// Delete implements archive.Store (deleting a missing object is no error,
// so a repeated delete is harmless).
func (s *Store) Delete(ctx context.Context, name string) error {
	return s.do(ctx, "delete", name, func(int) error { return s.inner.Delete(ctx, name) })
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
