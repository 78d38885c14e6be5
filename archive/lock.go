package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A repository lock is a lease kept as a sequence of write-once objects:
//
//	locks/<name>/<generation 016x>
//
// The newest generation says who holds the lock and until when. Acquiring,
// renewing, stealing an expired lease and releasing all write the next
// generation; because every store refuses to create an object that exists
// (a hard link on disk, If-None-Match on S3), exactly one of two racing
// writers wins, and a holder whose renewal loses learns at once that its
// lease is gone. Nothing ever deletes the newest generation, so numbering
// never restarts.
const lockPrefix = "locks/"

// ErrLocked is returned when another live holder has the lock.
var ErrLocked = errors.New("repository is locked")

// ErrLockLost marks work stopped because its lease was taken over.
var ErrLockLost = errors.New("repository lock lost")

// LockOptions tune a lease.
type LockOptions struct {
	Lease   time.Duration // how long a lease lasts without renewal (default 1 minute)
	Purpose string        // shown to whoever finds the lock held
	Now     func() time.Time
}

type lockRecord struct {
	Holder   string    `json:"holder"` // host/pid/random: unique per acquisition
	Purpose  string    `json:"purpose,omitempty"`
	Acquired time.Time `json:"acquired"`
	Expires  time.Time `json:"expires"`
	Released bool      `json:"released,omitempty"`
}

// Lock is a held lease, renewed in the background until Unlock.
type Lock struct {
	repo   *Repository
	name   string
	opts   LockOptions
	rec    lockRecord
	cancel context.CancelCauseFunc
	done   chan struct{}

	mu      sync.Mutex
	gen     uint64
	expires time.Time // of the newest generation this holder wrote
}

// AcquireLock takes the named lock or returns ErrLocked naming its holder.
// The returned context is cancelled, with ErrLockLost as its cause, if the
// lease is ever lost; run the locked work under it.
func (r *Repository) AcquireLock(ctx context.Context, name string, o LockOptions) (*Lock, context.Context, error) {
	if !ValidName(lockPrefix+name) || strings.Contains(name, "/") {
		return nil, nil, fmt.Errorf("lock name %q: %w", name, ErrBadName)
	}
	if o.Lease <= 0 {
		o.Lease = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	host, _ := os.Hostname()
	var rnd [4]byte
	rand.Read(rnd[:])
	now := o.Now()
	l := &Lock{repo: r, name: name, opts: o, done: make(chan struct{}),
		rec: lockRecord{Holder: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(rnd[:])), Purpose: o.Purpose, Acquired: now}}
	gen, cur, err := l.newest(ctx)
	if err != nil {
		return nil, nil, err
	}
	if cur != nil && !cur.Released && now.Before(cur.Expires) && !holderDead(cur.Holder) {
		return nil, nil, fmt.Errorf("%w: lock %q held by %s (%s) since %s, lease until %s", ErrLocked, name, cur.Holder,
			cur.Purpose, cur.Acquired.UTC().Format(time.RFC3339), cur.Expires.UTC().Format(time.RFC3339))
	}
	l.gen = gen
	if err := l.write(ctx, false); err != nil {
		if errors.Is(err, ErrExist) {
			return nil, nil, fmt.Errorf("%w: lock %q was taken by another process just now", ErrLocked, name)
		}
		return nil, nil, err
	}
	lctx, cancel := context.WithCancelCause(ctx)
	l.cancel = cancel
	go l.renew(lctx)
	return l, lctx, nil
}

// newest returns the newest generation number and its record (nil if
// none). Names that are not generations are ignored (verify reports
// them). A newest generation that cannot be read is a lease of unknown
// holder, taken to run out two leases after the store wrote it: a live
// holder would have renewed it by then (a newer generation), and if one
// still does, its renewal finds its turn taken and it stops.
func (l *Lock) newest(ctx context.Context) (uint64, *lockRecord, error) {
	prefix := lockPrefix + l.name + "/"
	var (
		last  string
		gen   uint64
		wrote time.Time
	)
	if err := l.repo.store.List(ctx, prefix, "", func(o ObjectInfo) error {
		rest := strings.TrimPrefix(o.Name, prefix)
		g, err := strconv.ParseUint(rest, 16, 64)
		if err != nil || len(rest) != 16 {
			return nil
		}
		if last == "" || g > gen {
			last, gen, wrote = o.Name, g, o.ModTime
		}
		return nil
	}); err != nil {
		return 0, nil, fmt.Errorf("list lock %s: %w", l.name, err)
	}
	if last == "" {
		return 0, nil, nil
	}
	b, err := l.repo.ReadAll(ctx, last, KindLock)
	var rec lockRecord
	if err == nil {
		if jerr := json.Unmarshal(b, &rec); jerr != nil {
			err = fmt.Errorf("%w: %v", ErrCorrupt, jerr)
		}
	}
	switch {
	case err == nil:
		return gen, &rec, nil
	case errors.Is(err, ErrCorrupt), errors.Is(err, ErrUnsupported):
		return gen, &lockRecord{Holder: fmt.Sprintf("an unknown holder (lock object %s is unreadable: %v)", last, err),
			Acquired: wrote, Expires: wrote.Add(2 * l.opts.Lease)}, nil
	default:
		return 0, nil, fmt.Errorf("read lock %s: %w", last, err)
	}
}

// write stores the next generation and removes the one before it.
func (l *Lock) write(ctx context.Context, released bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := l.rec
	rec.Released = released
	rec.Expires = l.opts.Now().Add(l.opts.Lease)
	b, err := jsonMarshal(rec)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%s%s/%016x", lockPrefix, l.name, l.gen+1)
	if _, err := l.repo.Put(ctx, name, KindLock, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("write lock %s: %w", name, err)
	}
	if l.gen > 0 {
		// Best effort: old generations are history, not state.
		_ = l.repo.store.Delete(ctx, fmt.Sprintf("%s%s/%016x", lockPrefix, l.name, l.gen))
	}
	l.gen++
	l.expires = rec.Expires
	return nil
}

func (l *Lock) renew(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.opts.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			err := l.write(ctx, false)
			if errors.Is(err, ErrExist) {
				l.cancel(fmt.Errorf("%w: lock %q was taken over after its lease expired", ErrLockLost, l.name))
				return
			}
			// A transient store error is retried at the next tick; the lease
			// outlives two missed renewals, but work must stop before another
			// process may take it over.
			l.mu.Lock()
			expiring := err != nil && l.opts.Now().After(l.expires.Add(-l.opts.Lease/6))
			l.mu.Unlock()
			if expiring {
				l.cancel(fmt.Errorf("%w: lock %q could not be renewed before its lease ran out: %v", ErrLockLost, l.name, err))
				return
			}
		}
	}
}

// Unlock stops renewal and releases the lease for the next holder.
func (l *Lock) Unlock(ctx context.Context) error {
	l.cancel(nil)
	<-l.done
	if err := l.write(ctx, true); err != nil {
		return fmt.Errorf("release lock %s: %w", l.name, err)
	}
	return nil
}

// WithLock runs fn holding the named lock. fn's context is cancelled if the
// lease is lost, and WithLock then returns ErrLockLost rather than whatever
// fn made of the cancellation.
func (r *Repository) WithLock(ctx context.Context, name string, o LockOptions, fn func(context.Context) error) error {
	l, lctx, err := r.AcquireLock(ctx, name, o)
	if err != nil {
		return err
	}
	err = fn(lctx)
	if lctx.Err() != nil && ctx.Err() == nil {
		err = context.Cause(lctx)
	}
	// Released even when ctx is done (SIGTERM): the next holder should not
	// have to wait for the lease to run out.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if uerr := l.Unlock(uctx); uerr != nil && err == nil && !errors.Is(uerr, ErrExist) {
		err = uerr
	}
	return err
}
