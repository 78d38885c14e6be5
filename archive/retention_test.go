package archive_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/file"
	"github.com/tidemark/tidemark/archive/store/storetest"
)

func summaries(times ...time.Time) []archive.BackupSummary {
	var out []archive.BackupSummary
	for i, t := range times {
		out = append(out, archive.BackupSummary{ID: fmt.Sprintf("b%02d", i), Finished: t})
	}
	return out
}

func kept(ds []archive.Decision) string {
	var ids []string
	for _, d := range ds {
		if d.Keep {
			ids = append(ids, d.Backup.ID)
		}
	}
	return strings.Join(ids, " ")
}

func TestPolicyApply(t *testing.T) {
	day := func(d, h int) time.Time { return time.Date(2026, 3, d, h, 0, 0, 0, time.UTC) }
	// Two backups a day, 1–10 March (b00 = 1 March 01:00 … b19 = 10 March 13:00).
	var times []time.Time
	for d := 1; d <= 10; d++ {
		times = append(times, day(d, 1), day(d, 13))
	}
	now := day(10, 20)
	cases := []struct {
		name string
		p    archive.Policy
		want string
	}{
		{"last", archive.Policy{KeepLast: 3}, "b19 b18 b17"},
		{"daily keeps each day's newest", archive.Policy{KeepDaily: 3}, "b19 b17 b15"},
		{"weekly by ISO week", archive.Policy{KeepWeekly: 3}, "b19 b15 b01"}, // weeks: 9–10, 2–8, 1 March
		{"monthly", archive.Policy{KeepMonthly: 5}, "b19"},
		// 3 days back from 10 March 20:00 is 7 March 20:00: b13 (7 Mar 13:00) is the window's base.
		{"window keeps its base", archive.Policy{Window: 3 * 24 * time.Hour}, "b19 b18 b17 b16 b15 b14 b13"},
		{"rules combine", archive.Policy{KeepLast: 1, KeepDaily: 2, KeepYearly: 1}, "b19 b17"},
	}
	for _, c := range cases {
		if got := kept(c.p.Apply(summaries(times...), now)); got != c.want {
			t.Errorf("%s: kept %q, want %q", c.name, got, c.want)
		}
	}
	// The newest backup is kept whatever the rules say.
	if got := kept(archive.Policy{Window: time.Hour}.Apply(summaries(day(1, 1), day(2, 1)), now)); got != "b01" {
		t.Errorf("newest not kept: %q", got)
	}
	if !(archive.Policy{}).Empty() {
		t.Error("empty policy not reported")
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"14d": 14 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "36h": 36 * time.Hour} {
		if got, err := archive.ParseDuration(in); err != nil || got != want {
			t.Errorf("%s: %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "d", "-1d", "1.5d", "x"} {
		if _, err := archive.ParseDuration(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// TestExpireKeepsWhatKeptBackupsNeed: chunks shared with a kept backup
// survive, chunks only the expired backup used are deleted, and a backup
// taken afterwards stores such a chunk again instead of deduplicating
// against a chunk that is gone.
func TestExpireKeepsWhatKeptBackupsNeed(t *testing.T) {
	ctx := context.Background()
	r, _ := newRepo(t, archive.InitOptions{NoEncrypt: true})
	shared, only := storetest.MixedData(2<<20), make([]byte, 2<<20+100) // only: three chunks of its own
	rand.Read(only)
	commit := func(finished time.Time, files ...[]byte) *archive.Manifest {
		m := &archive.Manifest{ID: archive.NewManifestID(finished), Engine: "test", Finished: finished}
		for i, f := range files {
			refs, _ := writeFile(t, r, f, archive.Aligned)
			m.Files = append(m.Files, archive.FileEntry{Path: fmt.Sprint(i), Size: int64(len(f)), Chunks: refs})
		}
		if err := r.CommitManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	now := time.Now()
	old := commit(now.Add(-48*time.Hour), shared, only)
	newer := commit(now.Add(-time.Hour), shared)
	// An uncommitted backup's leftovers: a chunk nothing references.
	leftover, _ := writeFile(t, r, storetest.MixedData(1 << 20)[:12345], archive.Aligned)
	// The packs that must go: those of the expired backup's own chunks (a
	// writer spreads chunks over up to --jobs packs) and the leftover's.
	doomed := map[string]bool{}
	for _, c := range append(old.Files[1].Chunks, leftover...) {
		name, _, _, err := r.ChunkLocation(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		doomed[name] = true
	}
	for _, c := range old.Files[0].Chunks {
		if name, _, _, _ := r.ChunkLocation(ctx, c.ID); doomed[name] {
			t.Fatal("a shared chunk is in a pack of the expired backup's own chunks")
		}
	}
	want := int64(len(doomed))

	dry, err := r.Expire(ctx, archive.Policy{KeepLast: 1}, now, archive.ExpireOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(dry.Expired) != 1 || dry.Expired[0].ID != old.ID || dry.Chunks.Objects != want {
		t.Fatalf("dry run: expired %v, chunks %+v", dry.Expired, dry.Chunks)
	}
	if ids, _ := r.ListManifests(ctx); len(ids) != 2 {
		t.Fatal("dry run deleted a backup")
	}
	res, err := r.Expire(ctx, archive.Policy{KeepLast: 1}, now, archive.ExpireOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Expired) != 1 || res.Chunks.Objects != want {
		t.Fatalf("expired %v, chunks %+v", res.Expired, res.Chunks)
	}
	rep, err := r.Verify(ctx, nil)
	if err != nil || !rep.OK() {
		t.Fatalf("verify after expire: %+v, %v", rep, err)
	}
	if got := readBack(t, r, newer.Files[0].Chunks); string(got) != string(shared) {
		t.Fatal("kept backup no longer reads back")
	}
	refs, stats := writeFile(t, r, only, archive.Aligned)
	if stats.NewChunks != 3 || string(readBack(t, r, refs)) != string(only) {
		t.Fatalf("re-storing an expired chunk: %+v", stats)
	}
	if left, _ := r.Backups(ctx); len(left) != 1 || left[0].ID != newer.ID {
		t.Fatalf("catalog after expire: %+v", left)
	}
	if _, err := r.Expire(ctx, archive.Policy{}, now, archive.ExpireOptions{}); err == nil {
		t.Fatal("an empty policy was applied")
	}
}

// TestExpireRepacksMostlyDeadPacks: a pack whose chunks the kept backups
// mostly no longer reference is rewritten with only the referenced ones;
// the kept backup still restores and verifies, and the space comes back.
func TestExpireRepacksMostlyDeadPacks(t *testing.T) {
	ctx := context.Background()
	r, dir := newRepo(t, archive.InitOptions{NoEncrypt: true, Compression: "none"})
	data := make([]byte, 4<<20) // four aligned chunks, one writer: one pack
	rand.Read(data)
	w, err := r.NewChunkWriter(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := w.WriteFile(ctx, bytes.NewReader(data), archive.Aligned)
	if err != nil || w.Commit(ctx) != nil {
		t.Fatal(err)
	}
	now := time.Now()
	commit := func(finished time.Time, chunks []archive.ChunkRef) *archive.Manifest {
		m := &archive.Manifest{ID: archive.NewManifestID(finished), Engine: "test", Finished: finished,
			Files: []archive.FileEntry{{Path: "f", Size: int64(len(chunks)) << 20, Chunks: chunks}}}
		if err := r.CommitManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	commit(now.Add(-48*time.Hour), refs)
	kept := commit(now.Add(-time.Hour), refs[1:2]) // keeps a quarter of the pack
	oldPack, _, _, err := r.ChunkLocation(ctx, refs[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Expire(ctx, archive.Policy{KeepLast: 1}, now, archive.ExpireOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Chunks.Objects != 1 || res.Chunks.Bytes < 3<<20 {
		t.Fatalf("expire: %+v", res.Chunks)
	}
	if _, err := os.Stat(filepath.Join(dir, oldPack)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the mostly dead pack is still there: %v", err)
	}
	newPack, _, _, err := r.ChunkLocation(ctx, refs[1].ID)
	if err != nil || newPack == oldPack {
		t.Fatalf("chunk not moved: %s, %v", newPack, err)
	}
	if got := readBack(t, r, kept.Files[0].Chunks); !bytes.Equal(got, data[1<<20:2<<20]) {
		t.Fatal("kept backup does not read back after repacking")
	}
	// A fresh handle (no cached locations) agrees, and verify is clean.
	s, _ := file.Open(dir)
	r2, err := archive.Open(ctx, s, archive.Keys{})
	if err != nil {
		t.Fatal(err)
	}
	if got := readBack(t, r2, kept.Files[0].Chunks); !bytes.Equal(got, data[1<<20:2<<20]) {
		t.Fatal("kept backup does not read back through a new handle")
	}
	if rep, err := r2.Verify(ctx, nil); err != nil || !rep.OK() {
		t.Fatalf("verify after repack: %+v, %v", rep, err)
	}
	// The dropped chunks are stored anew by a later backup, not assumed.
	_, st := writeFile(t, r2, data, archive.Aligned)
	if st.NewChunks != 3 {
		t.Fatalf("after repacking, a backup of the whole data stored %d new chunks, want 3", st.NewChunks)
	}
}

// TestPolicyKeepsDependencies: a kept incremental keeps its whole chain of
// references, however old; a chain no kept backup needs goes.
func TestPolicyKeepsDependencies(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 3, d, 1, 0, 0, 0, time.UTC) }
	bs := summaries(day(1), day(2), day(3), day(4), day(5))
	bs[1].DependsOn = []string{"b00"} // b00 full ← b01 ← b02; b03 full ← b04
	bs[2].DependsOn = []string{"b01"}
	bs[4].DependsOn = []string{"b03"}
	if got := kept((archive.Policy{KeepLast: 1}).Apply(bs, day(6))); got != "b04 b03" {
		t.Fatalf("keep last 1 kept %q, want the newest and its reference", got)
	}
	ds := (archive.Policy{KeepDaily: 1, KeepMonthly: 1}).Apply(append(bs[:3:3], bs[4]), day(6)) // b03 gone: b04's chain is broken
	if got := kept(ds); got != "b04" {
		t.Fatalf("kept %q", got)
	}
	bs[4].DependsOn = nil
	bs[3].DependsOn = []string{"b02"}
	if got := kept((archive.Policy{KeepLast: 2}).Apply(bs, day(6))); got != "b04 b03 b02 b01 b00" {
		t.Fatalf("keep last 2 kept %q, want the whole chain under b03", got)
	}
	for _, d := range (archive.Policy{KeepLast: 2}).Apply(bs, day(6)) {
		if d.Backup.ID == "b00" && (len(d.Reasons) != 1 || d.Reasons[0] != "needed by b01") {
			t.Fatalf("b00 kept for %v", d.Reasons)
		}
	}
}
