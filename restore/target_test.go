package restore

import (
	"testing"
	"time"
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
		got, err := ParseTime(s)
		if err != nil {
			t.Errorf("%q: %v", s, err)
			continue
		}
		if !got.Equal(want) {
			t.Errorf("%q = %v, want %v", s, got, want)
		}
	}
	for _, s := range []string{"", "2026-11-25 14:03:00", "2026-11-25T14:03:00", "yesterday", "2026-11-25 14:03:00 IST", "2026-13-25T14:03:00Z"} {
		if _, err := ParseTime(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestFormatPostgresRoundTrip(t *testing.T) {
	in := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.FixedZone("x", 3600))
	s := FormatPostgres(in)
	if s != "2026-01-02 02:04:05.123456+00" {
		t.Fatalf("FormatPostgres = %s", s)
	}
	back, err := ParseTime(s)
	if err != nil || !back.Equal(in) {
		t.Fatalf("round trip: %v, %v", back, err)
	}
}

func FuzzParseTime(f *testing.F) {
	f.Add("2026-11-25T14:03:00.5Z")
	f.Add("2026-11-25 14:03:00.5+00")
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := ParseTime(s)
		if err != nil {
			return
		}
		back, err := ParseTime(FormatPostgres(tm))
		if err != nil {
			t.Fatalf("formatted %q does not parse: %v", FormatPostgres(tm), err)
		}
		if !back.Truncate(time.Microsecond).Equal(tm.Truncate(time.Microsecond)) && tm.Year() >= 0 && tm.Year() <= 9999 {
			t.Fatalf("round trip %v -> %v", tm, back)
		}
	})
}
