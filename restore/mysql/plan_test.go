package mysql

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/binlog"
)

// TestChooseBaseFromCatalog: positions come from the catalog; a manifest
// (for the snapshot's time) is read only for a base whose run holds the
// target's second.
func TestChooseBaseFromCatalog(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	bases := []archive.BackupSummary{
		{ID: "b1", Engine: "mysql", Started: t0, Finished: t0.Add(10 * time.Second), Start: "bin.000001:1000#0-1-10"},
		{ID: "b2", Engine: "mysql", Started: t0.Add(time.Hour), Finished: t0.Add(time.Hour + 10*time.Second), Start: "bin.000002:400#0-1-20"},
		{ID: "b3", Engine: "mysql", Started: t0.Add(2 * time.Hour), Finished: t0.Add(2*time.Hour + 10*time.Second), Start: "bin.000003:4#0-1-30"},
	}
	// The snapshots were taken 3 s into each backup.
	snapshots := map[string]time.Time{"b1": t0.Add(3 * time.Second), "b2": t0.Add(time.Hour + 3*time.Second), "b3": t0.Add(2*time.Hour + 3*time.Second)}
	for _, tc := range []struct {
		name string
		to   binlog.Target
		want string // "" for none
		read string // the manifests read, in order
	}{
		{"latest", binlog.Target{Latest: true}, "b3", ""},
		{"time after the newest", binlog.Target{Time: t0.Add(3 * time.Hour)}, "b3", ""},
		{"time between b1 and b2", binlog.Target{Time: t0.Add(30 * time.Minute)}, "b1", ""},
		{"time at b2's finish", binlog.Target{Time: t0.Add(time.Hour + 10*time.Second)}, "b2", ""},
		{"time in b2's run, after its snapshot", binlog.Target{Time: t0.Add(time.Hour + 5*time.Second)}, "b2", "b2"},
		{"time in b2's second of snapshot", binlog.Target{Time: t0.Add(time.Hour + 3*time.Second + 500*time.Millisecond)}, "b2", "b2"},
		{"time in b2's run, before its snapshot", binlog.Target{Time: t0.Add(time.Hour + time.Second)}, "b1", "b2"},
		{"time before the oldest", binlog.Target{Time: t0.Add(-time.Minute)}, "", ""},
		{"position in the second file", binlog.Target{Position: binlog.Position{File: "bin.000002", Pos: 500}}, "b2", ""},
		{"position before b2's", binlog.Target{Position: binlog.Position{File: "bin.000002", Pos: 300}}, "b1", ""},
		{"position before the oldest", binlog.Target{Position: binlog.Position{File: "bin.000001", Pos: 999}}, "", ""},
		{"gtid after b2's", binlog.Target{GTID: "0-1-25"}, "b2", ""},
		{"gtid of b1", binlog.Target{GTID: "0-1-10"}, "b1", ""},
		{"gtid in another domain", binlog.Target{GTID: "1-1-5"}, "b3", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var read []string
			got, err := chooseBase(bases, tc.to, func(b archive.BackupSummary) (time.Time, error) {
				read = append(read, b.ID)
				return snapshots[b.ID], nil
			})
			if err != nil {
				t.Fatal(err)
			}
			id := ""
			if got != nil {
				id = got.ID
			}
			if id != tc.want || strings.Join(read, " ") != tc.read {
				t.Fatalf("chose %q having read the manifests of %q; want %q having read %q", id, read, tc.want, tc.read)
			}
		})
	}
	bad := append([]archive.BackupSummary(nil), bases...)
	bad[2].Start = "garbage"
	if _, err := chooseBase(bad, binlog.Target{GTID: "0-1-25"}, nil); !errors.Is(err, archive.ErrCorrupt) {
		t.Fatalf("a catalog entry with a bad position: %v, want archive.ErrCorrupt", err)
	}
}
