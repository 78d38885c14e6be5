package archive_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
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
