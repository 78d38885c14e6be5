package postgres

import (
	"testing"
	"time"

	"github.com/tidemark/tidemark/restore"
)

func TestFormatTimeRoundTrip(t *testing.T) {
	in := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.FixedZone("x", 3600))
	s := FormatTime(in)
	if s != "2026-01-02 02:04:05.123456+00" {
		t.Fatalf("FormatTime = %s", s)
	}
	back, err := restore.ParseTime(s)
	if err != nil || !back.Equal(in) {
		t.Fatalf("round trip: %v, %v", back, err)
	}
}
