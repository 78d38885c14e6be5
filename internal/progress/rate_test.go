package progress

import (
	"testing"
	"time"
)

// TestFormatRate: the unit follows the size; small work never reads
// "0.0 MiB/s" and instant work gives no rate at all.
func TestFormatRate(t *testing.T) {
	for _, c := range []struct {
		bytes int64
		d     time.Duration
		want  string
	}{
		{20 << 10, 300 * time.Millisecond, "66.7 KiB/s"},
		{3 << 30, 2 * time.Second, "1.5 GiB/s"},
		{100, time.Second, "100 B/s"},
		{5 << 20, time.Millisecond, ""},
		{0, time.Second, ""},
	} {
		if got := FormatRate(c.bytes, c.d); got != c.want {
			t.Errorf("FormatRate(%d, %s) = %q, want %q", c.bytes, c.d, got, c.want)
		}
	}
}
