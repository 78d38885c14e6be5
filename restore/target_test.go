package restore_test

// An external test package: the fuzz target round-trips through
// restore/postgres, which imports restore.

import (
	"testing"
	"time"

	"github.com/tidemark/tidemark/restore"
	pgrestore "github.com/tidemark/tidemark/restore/postgres"
)

func TestParseTime(t *testing.T) {
	want := time.Date(2026, 11, 25, 14, 3, 0, 500000000, time.UTC)
	for _, s := range []string{
		"2026-11-25T14:03:00.5Z",
		"2026-11-25T15:03:00.5+01:00",
		"2026-11-25 14:03:00.5+00",
		"2026-11-25 14:03:00.500000+00:00",
		"2026-11-25 16:03:00.5+0200",
		"2026-11-25 14:03:00.5 UTC",
		" 2026-11-25T14:03:00.500Z ",
	} {
		got, err := restore.ParseTime(s)
		if err != nil {
			t.Errorf("%q: %v", s, err)
			continue
		}
		if !got.Equal(want) {
			t.Errorf("%q = %v, want %v", s, got, want)
		}
	}
	for _, s := range []string{"", "2026-11-25 14:03:00", "2026-11-25T14:03:00", "yesterday", "2026-11-25 14:03:00 IST", "2026-13-25T14:03:00Z"} {
		if _, err := restore.ParseTime(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func FuzzParseTime(f *testing.F) {
	f.Add("2026-11-25T14:03:00.5Z")
	f.Add("2026-11-25 14:03:00.5+00")
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := restore.ParseTime(s)
		if err != nil {
			return
		}
		back, err := restore.ParseTime(pgrestore.FormatTime(tm))
		if err != nil {
			t.Fatalf("formatted %q does not parse: %v", pgrestore.FormatTime(tm), err)
		}
		if !back.Truncate(time.Microsecond).Equal(tm.Truncate(time.Microsecond)) && tm.Year() >= 0 && tm.Year() <= 9999 {
			t.Fatalf("round trip %v -> %v", tm, back)
		}
	})
}
