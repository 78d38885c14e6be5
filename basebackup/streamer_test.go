package basebackup

import "testing"

// TestArchivedBy: every recorded value reads as a sentence part, never
// "archived by the none needed".
func TestArchivedBy(t *testing.T) {
	for by, want := range map[string]string{
		"streamer":    "archived by the running streamer",
		"backup":      "archived by the backup itself (no streamer ran)",
		"none needed": "nothing to archive: no change during the backup",
	} {
		if got := ArchivedBy(by); got != want {
			t.Errorf("ArchivedBy(%q) = %q, want %q", by, got, want)
		}
	}
}
