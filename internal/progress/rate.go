package progress

import "time"

// minRated is the shortest work whose rate means anything: below it the
// clock's granularity and setup costs dominate.
const minRated = 50 * time.Millisecond

// FormatRate is bytes over d for people, in the unit that fits ("640.0
// KiB/s", "1.2 GiB/s"), or "" when d is too short to give a rate: tiny
// or instant work says nothing rather than "0.0 MiB/s".
func FormatRate(bytes int64, d time.Duration) string {
	if d < minRated || bytes <= 0 {
		return ""
	}
	return FormatBytes(int64(float64(bytes)/d.Seconds())) + "/s"
}
