package archive_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/file"
	"github.com/tidemark/tidemark/archive/store/storetest"
)

// flipByte damages a stored object in place, as bit rot or a stray write
// would: the byte at off (from the end when negative) is inverted.
func flipByte(t *testing.T, dir, name string, off int64) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += int64(len(b))
	}
	b[off] ^= 0xff
	if err := os.WriteFile(p, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// remove deletes a stored object behind the repository's back.
func remove(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(name))); err != nil {
		t.Fatal(err)
	}
}

// damaged is a repository with two committed backups (each its own file
// content, so each has its own pack and index) to damage.
type damaged struct {
	t       *testing.T
	r       *archive.Repository
	dir     string
	ids     []string
	files   [][]byte
	refs    [][]archive.ChunkRef
	indexes []string // index objects, one per backup, in order
}

func newDamaged(t *testing.T) *damaged {
	t.Helper()
	ctx := context.Background()
	r, dir := newRepo(t, archive.InitOptions{NoEncrypt: true})
	d := &damaged{t: t, r: r, dir: dir}
	for i := range 2 {
		data := storetest.MixedData(3 << 20)
		refs, _ := writeFile(t, r, data, archive.Aligned)
		m := &archive.Manifest{ID: archive.NewManifestID(time.Now().Add(time.Duration(i-2) * time.Hour)), Engine: "test",
			Started: time.Now().Add(time.Duration(i-2) * time.Hour), Finished: time.Now().Add(time.Duration(i-2) * time.Hour),
			Files: []archive.FileEntry{{Path: "f", Size: int64(len(data)), Chunks: refs}}}
		if err := r.CommitManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
		d.ids, d.files, d.refs = append(d.ids, m.ID), append(d.files, data), append(d.refs, refs)
	}
	d.indexes = d.list("index/")
	if len(d.indexes) != 2 {
		t.Fatalf("%d index objects, want 2", len(d.indexes))
	}
	return d
}

func (d *damaged) list(prefix string) []string {
	d.t.Helper()
	var names []string
	if err := d.r.Store().List(context.Background(), prefix, "", func(o archive.ObjectInfo) error {
		names = append(names, o.Name)
		return nil
	}); err != nil {
		d.t.Fatal(err)
	}
	return names
}

// verify runs verify and returns its problems and leftovers as text.
func (d *damaged) verify() (problems, leftovers string) {
	d.t.Helper()
	rep, err := d.r.Verify(context.Background(), nil)
	if err != nil {
		d.t.Fatalf("verify: %v", err)
	}
	return strings.Join(rep.Problems, "\n"), strings.Join(rep.Leftovers, "\n")
}

// restorable checks every backup's file reads back whole.
func (d *damaged) restorable(which ...int) {
	d.t.Helper()
	for _, i := range which {
		var buf bytes.Buffer
		if err := d.r.ReadChunks(context.Background(), d.refs[i], &buf, 2); err != nil || !bytes.Equal(buf.Bytes(), d.files[i]) {
			d.t.Fatalf("backup %s does not read back: %v", d.ids[i], err)
		}
	}
}

func (d *damaged) expire(dryRun bool) (*archive.ExpireResult, error) {
	return d.r.Expire(context.Background(), archive.Policy{KeepLast: 2}, time.Now(), archive.ExpireOptions{DryRun: dryRun})
}

// TestLostChunkIndex: with an index object deleted, verify names the
// backup whose chunks no index lists; restores still find them from the
// packs' trailers; expire keeps their pack and indexes them again; repair
// does the same without expiring.
func TestLostChunkIndex(t *testing.T) {
	d := newDamaged(t)
	remove(t, d.dir, d.indexes[0])
	problems, _ := d.verify()
	if !strings.Contains(problems, "backup "+d.ids[0]+": ") || !strings.Contains(problems, "no chunk index") {
		t.Fatalf("verify with a lost index: %q", problems)
	}
	d.r, _ = reopen(t, d.dir, archive.Keys{}) // a fresh process: nothing cached
	d.restorable(0, 1)
	if _, err := d.r.Repair(context.Background()); err != nil {
		t.Fatal(err)
	}
	if problems, _ := d.verify(); problems != "" {
		t.Fatalf("after repair: %s", problems)
	}
	remove(t, d.dir, d.list("index/")[0])
	remove(t, d.dir, d.list("index/")[0])
	if _, err := d.expire(false); err != nil {
		t.Fatalf("expire with every index lost: %v", err)
	}
	d.r, _ = reopen(t, d.dir, archive.Keys{})
	d.restorable(0, 1)
	if problems, leftovers := d.verify(); problems != "" || leftovers != "" {
		t.Fatalf("after expire re-indexed: %s\n%s", problems, leftovers)
	}
}

// TestLostRefs: verify names a backup whose refs object is gone; expire,
// which must not guess, refuses naming it (corruption, exit 3) and deletes
// nothing; repair writes it again from the manifest.
func TestLostRefs(t *testing.T) {
	d := newDamaged(t)
	remove(t, d.dir, "refs/"+d.ids[1])
	problems, _ := d.verify()
	if !strings.Contains(problems, "refs/"+d.ids[1]) {
		t.Fatalf("verify with lost refs: %q", problems)
	}
	before := len(d.list(""))
	if _, err := d.expire(false); !errors.Is(err, archive.ErrCorrupt) || !strings.Contains(err.Error(), "refs/"+d.ids[1]) {
		t.Fatalf("expire with lost refs: %v", err)
	}
	if after := len(d.list("")); after != before {
		t.Fatalf("expire deleted %d objects while refs were missing", before-after)
	}
	done, err := d.r.Repair(context.Background())
	if err != nil || len(done) != 1 {
		t.Fatalf("repair: %v, %v", done, err)
	}
	if problems, _ := d.verify(); problems != "" {
		t.Fatalf("after repair: %s", problems)
	}
	if _, err := d.expire(false); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptNewestManifest: a flipped byte in the newest manifest is
// named, and verify goes on to check the older backup (whose damaged pack
// it names too).
func TestCorruptNewestManifest(t *testing.T) {
	d := newDamaged(t)
	flipByte(t, d.dir, "backups/"+d.ids[1], -10)
	loc, _, _, err := d.r.ChunkLocation(context.Background(), d.refs[0][1].ID)
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, d.dir, loc, 200)
	problems, _ := d.verify()
	for _, want := range []string{"backups/" + d.ids[1], "backup " + d.ids[0] + ": 1 referenced chunks missing or corrupt"} {
		if !strings.Contains(problems, want) {
			t.Errorf("verify lacks %q:\n%s", want, problems)
		}
	}
}

// TestLostCatalogEntry: verify names it; repair writes it again.
func TestLostCatalogEntry(t *testing.T) {
	d := newDamaged(t)
	remove(t, d.dir, "catalog/"+d.ids[1])
	if problems, _ := d.verify(); !strings.Contains(problems, "catalog/"+d.ids[1]) {
		t.Fatalf("verify with a lost catalog entry: %q", problems)
	}
	if _, err := d.r.Repair(context.Background()); err != nil {
		t.Fatal(err)
	}
	if problems, _ := d.verify(); problems != "" {
		t.Fatalf("after repair: %s", problems)
	}
}

// TestLeftoversReportedAndRemoved: what a killed backup leaves (a pack no
// index lists, refs and catalog without a manifest) and a killed write's
// temporary file are listed by verify and removed by expire, its dry run
// counting exactly what the real run deletes.
func TestLeftoversReportedAndRemoved(t *testing.T) {
	d := newDamaged(t)
	ctx := context.Background()
	// A backup killed before its commit: its pack and index landed, then an
	// expire-like loss of the index; and its refs and catalog entry.
	writeFile(t, d.r, storetest.MixedData(1<<20), archive.Aligned)
	remove(t, d.dir, d.list("index/")[2])
	ghost := archive.NewManifestID(time.Now())
	if _, err := d.r.Put(ctx, "refs/"+ghost, archive.KindRefs, bytes.NewReader([]byte{1})); err != nil {
		t.Fatal(err)
	}
	if _, err := d.r.Put(ctx, "catalog/"+ghost, archive.KindCatalog, strings.NewReader(`{"id":"`+ghost+`"}`)); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(d.dir, "packs", "ab", ".tmp-abcdef-1234")
	os.MkdirAll(filepath.Dir(tmp), 0o750)
	os.WriteFile(tmp, make([]byte, 6<<20), 0o640)
	old := time.Now().Add(-2 * archive.TempFileAge)
	os.Chtimes(tmp, old, old)

	problems, leftovers := d.verify()
	if problems != "" {
		t.Fatalf("leftovers reported as problems: %s", problems)
	}
	for _, want := range []string{"refs/" + ghost, "catalog/" + ghost, "packs/ab/.tmp-abcdef-1234", "in no chunk index and referenced by no backup"} {
		if !strings.Contains(leftovers, want) {
			t.Errorf("verify's leftovers lack %q:\n%s", want, leftovers)
		}
	}
	dry, err := d.expire(true)
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.expire(false)
	if err != nil {
		t.Fatal(err)
	}
	if dry.Orphans != 2 || res.Orphans != 2 || dry.TempFiles.Objects != 1 || res.TempFiles.Objects != 1 || dry.Chunks.Objects != res.Chunks.Objects {
		t.Fatalf("dry run counted %d orphans, %d temp files, %d packs; the real run deleted %d, %d, %d",
			dry.Orphans, dry.TempFiles.Objects, dry.Chunks.Objects, res.Orphans, res.TempFiles.Objects, res.Chunks.Objects)
	}
	if _, leftovers := d.verify(); leftovers != "" {
		t.Fatalf("after expire: %s", leftovers)
	}
	d.restorable(0, 1)
}

// TestHeartbeats: the newest heartbeat per engine is the state; older
// ones are deleted; an unreadable one is reported, not dropped; one
// overdue by three intervals is stale.
func TestHeartbeats(t *testing.T) {
	ctx := context.Background()
	r, dir := newRepo(t, archive.InitOptions{NoEncrypt: true})
	t0 := time.Now().UTC().Add(-time.Minute)
	for i, state := range []string{archive.StreamStarting, archive.StreamStreaming, archive.StreamReconnecting} {
		h := archive.Heartbeat{Engine: "postgres", Stream: "WAL", State: state, Updated: t0.Add(time.Duration(i) * time.Second), Interval: 20}
		if state == archive.StreamReconnecting {
			h.Error = "connect: connection refused"
		}
		if err := r.PutHeartbeat(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.PutHeartbeat(ctx, archive.Heartbeat{Engine: "mysql", Stream: "binlog", State: archive.StreamStreaming, Updated: t0, Interval: 20}); err != nil {
		t.Fatal(err)
	}
	hs, err := r.Heartbeats(ctx)
	if err != nil || len(hs) != 2 || hs[1].Engine != "postgres" || hs[1].State != archive.StreamReconnecting || hs[1].Error == "" {
		t.Fatalf("heartbeats = %+v, %v", hs, err)
	}
	var names []string
	r.Store().List(ctx, "heartbeats/postgres/", "", func(o archive.ObjectInfo) error { names = append(names, o.Name); return nil })
	if len(names) != 1 {
		t.Fatalf("older heartbeats kept: %v", names)
	}
	if hs[1].Stale(t0.Add(30*time.Second)) || !hs[1].Stale(t0.Add(2*time.Minute)) {
		t.Fatal("staleness")
	}
	flipByte(t, dir, names[0], -3)
	hs, err = r.Heartbeats(ctx)
	if err != nil || hs[1].State != "unknown" || !strings.Contains(hs[1].Error, names[0]) {
		t.Fatalf("damaged heartbeat: %+v, %v", hs, err)
	}
}

// fullDisk refuses new objects until something is deleted, as a full
// disk does: the space an older heartbeat leaves is what the next needs.
type fullDisk struct {
	archive.Store
	freed bool
}

func (f *fullDisk) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if !f.freed {
		io.Copy(io.Discard, r)
		return fmt.Errorf("file put %s: write: %w", name, syscall.ENOSPC)
	}
	return f.Store.Put(ctx, name, r, size)
}

func (f *fullDisk) Delete(ctx context.Context, name string) error {
	f.freed = true
	return f.Store.Delete(ctx, name)
}

// TestHeartbeatOnAFullDisk: when the store refuses the heartbeat, the
// older one is deleted first and the write tried again, so the record of
// why the stream is stuck lands in the space it leaves.
func TestHeartbeatOnAFullDisk(t *testing.T) {
	ctx := context.Background()
	r, dir := newRepo(t, archive.InitOptions{NoEncrypt: true})
	if err := r.PutHeartbeat(ctx, archive.Heartbeat{Engine: "postgres", State: archive.StreamStreaming, Updated: time.Now(), Interval: 20}); err != nil {
		t.Fatal(err)
	}
	fs, _ := file.Open(dir)
	full, err := archive.Open(ctx, &fullDisk{Store: fs}, archive.Keys{})
	if err != nil {
		t.Fatal(err)
	}
	stuck := archive.Heartbeat{Engine: "postgres", State: archive.StreamReconnecting, Error: "no space left on device", Updated: time.Now().Add(time.Second), Interval: 20}
	if err := full.PutHeartbeat(ctx, stuck); err != nil {
		t.Fatal(err)
	}
	hs, err := r.Heartbeats(ctx)
	if err != nil || len(hs) != 1 || hs[0].Error != "no space left on device" {
		t.Fatalf("heartbeats = %+v, %v", hs, err)
	}
}
