package retry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/file"
	"github.com/tidemark/tidemark/archive/store/storetest"
)

// clock is a fake clock the decorator sleeps on: tests cover minutes of
// outage in milliseconds.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return nil
}

// outage is a real (file) store that, until the clock passes its end,
// refuses connections as a stopped server does, and breaks reads, writes
// and listings part-way as a server killed mid-request does.
type outage struct {
	archive.Store
	clock *clock
	until time.Time
	calls int
}

var errRefused = &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
var errReset = &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}

func (o *outage) down() bool { o.calls++; return o.clock.Now().Before(o.until) }

func (o *outage) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if o.down() {
		io.CopyN(io.Discard, r, 1<<20) // part of the data went out before the server died
		return errReset
	}
	return o.Store.Put(ctx, name, r, size)
}

func (o *outage) Get(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	if o.down() {
		return nil, errRefused
	}
	rc, err := o.Store.Get(ctx, name, off, n)
	if err != nil {
		return nil, err
	}
	// The connection breaks after 100 KiB while the outage lasts.
	return &breaking{ReadCloser: rc, o: o, left: 100 << 10}, nil
}

type breaking struct {
	io.ReadCloser
	o    *outage
	left int
}

func (b *breaking) Read(p []byte) (int, error) {
	if b.left <= 0 && b.o.down() {
		return 0, errReset
	}
	if len(p) > b.left && b.left > 0 {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= n
	return n, err
}

func (o *outage) List(ctx context.Context, prefix, after string, fn func(archive.ObjectInfo) error) error {
	n := 0
	return o.Store.List(ctx, prefix, after, func(oi archive.ObjectInfo) error {
		if n++; n > 2 && o.down() {
			return errReset
		}
		return fn(oi)
	})
}

func (o *outage) Stat(ctx context.Context, name string) (archive.ObjectInfo, error) {
	if o.down() {
		return archive.ObjectInfo{}, fmt.Errorf("%w: 503 Service Unavailable", archive.ErrUnavailable)
	}
	return o.Store.Stat(ctx, name)
}

func (o *outage) Delete(ctx context.Context, name string) error {
	if o.down() {
		return errRefused
	}
	return o.Store.Delete(ctx, name)
}

func newOutage(t *testing.T, d time.Duration) (*outage, *Store) {
	t.Helper()
	fs, err := file.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	o := &outage{Store: fs, clock: c, until: c.now.Add(d)}
	return o, Wrap(o, Options{Now: c.Now, Sleep: c.Sleep})
}

// TestOutlastsA30SecondOutage: every operation started during a 30 s
// outage completes once the store is back, with the data intact: a Put
// whose first attempt died part-way is sent again whole (spilled to disk,
// it is larger than the memory spool), a read that breaks resumes where it
// stopped, a listing resumes after the last name it delivered.
func TestOutlastsA30SecondOutage(t *testing.T) {
	ctx := context.Background()
	o, s := newOutage(t, 30*time.Second)
	data := storetest.MixedData(6 << 20)
	if err := s.Put(ctx, "packs/ab/big", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("put through the outage: %v", err)
	}
	for i := range 5 {
		o.until = o.clock.Now().Add(30 * time.Second)
		if err := s.Put(ctx, fmt.Sprintf("index/%d", i), strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
	}
	o.until = o.clock.Now().Add(30 * time.Second)
	if _, err := s.Stat(ctx, "packs/ab/big"); err != nil {
		t.Fatalf("stat through the outage: %v", err)
	}
	// A read that starts well and breaks when the outage begins.
	rc, err := s.Get(ctx, "packs/ab/big", 1000, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data[1000:]) {
		t.Fatalf("read through the outage: %d bytes, %v", len(got), err)
	}
	o.until = o.clock.Now().Add(30 * time.Second)
	var names []string
	if err := s.List(ctx, "index/", "", func(oi archive.ObjectInfo) error { names = append(names, oi.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "index/0,index/1,index/2,index/3,index/4" {
		t.Fatalf("listing through the outage: %v", names)
	}
	o.until = o.clock.Now().Add(30 * time.Second)
	if err := s.Delete(ctx, "index/0"); err != nil {
		t.Fatal(err)
	}
	if o.calls < 20 {
		t.Fatalf("only %d calls: the outage was not exercised", o.calls)
	}
}

// TestGivesUpNamingStoreAndOperation: an outage longer than the budget
// ends in Tidemark's own message, with the store, the operation, the name
// and how long it tried, and the store's error kept in the chain.
func TestGivesUpNamingStoreAndOperation(t *testing.T) {
	o, s := newOutage(t, time.Hour)
	start := o.clock.Now()
	err := s.Put(context.Background(), "wal/00000001/000000010000000000000003", strings.NewReader("x"), 1)
	if !errors.Is(err, ErrGaveUp) || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("put against a store that stays down: %v", err)
	}
	for _, want := range []string{s.Location(), "put wal/00000001/000000010000000000000003", "giving up"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	if took := o.clock.Now().Sub(start); took < time.Minute || took > 4*time.Minute {
		t.Fatalf("tried for %s", took)
	}
}

// full fails every write as a full disk does.
type full struct{ archive.Store }

func (full) Put(context.Context, string, io.Reader, int64) error {
	return fmt.Errorf("write: %w", syscall.ENOSPC)
}

// TestDoesNotRetryWhatWaitingCannotFix: a full disk, a missing object and
// an existing one are answered at once.
func TestDoesNotRetryWhatWaitingCannotFix(t *testing.T) {
	ctx := context.Background()
	o, s := newOutage(t, 0)
	if err := s.Put(ctx, "a", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	calls := o.calls
	if err := s.Put(ctx, "a", strings.NewReader("y"), 1); !errors.Is(err, archive.ErrExist) {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "b"); !errors.Is(err, archive.ErrNotExist) {
		t.Fatal(err)
	}
	if o.calls != calls+2 {
		t.Fatalf("%d calls for two contract answers", o.calls-calls)
	}
	c := &clock{}
	fs := Wrap(full{o.Store}, Options{Now: c.Now, Sleep: c.Sleep})
	if err := fs.Put(ctx, "c", strings.NewReader("x"), 1); !errors.Is(err, syscall.ENOSPC) || !c.now.IsZero() {
		t.Fatalf("full disk: %v after %s", err, c.now.Sub(time.Time{}))
	}
}

// TestConformance: the decorator keeps the store contract.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) archive.Store {
		fs, err := file.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return Wrap(fs, Options{})
	}, storetest.Options{})
}
