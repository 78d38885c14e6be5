// Package restore holds what every engine's restore shares: target time
// parsing, the error classes a restore refuses with, the drill report and
// the plumbing of scratch servers. Each engine's planner and applier is in
// its sub-package (restore/postgres, restore/mysql, restore/mongodb): it
// picks the base backup that can reach a target, checks that the archived
// stream is continuous from that base to the target, and drives the
// engine's applier.
package restore

import (
	"fmt"
	"strings"
	"time"
)

// timeLayouts are the forms --to-time accepts: RFC 3339 (with optional
// fractional seconds) and what PostgreSQL prints and parses for timestamptz.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999-0700",
	"2006-01-02 15:04:05.999999999 Z07:00",
	"2006-01-02 15:04:05.999999999 Z07",
	"2006-01-02 15:04:05.999999999 MST",
}

// ParseTime parses a recovery target time. A zone is required: a restore
// target that silently means "server local time" is a classic way to
// restore the wrong moment.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			if l == timeLayouts[len(timeLayouts)-1] && !knownZone(s) {
				continue
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("target time %q: want RFC 3339 (2026-11-25T14:03:00.5Z, 2026-11-25T15:03:00+01:00) or PostgreSQL form (2026-11-25 14:03:00.5+00), always with a zone", s)
}

// knownZone accepts only UTC/GMT abbreviations: other abbreviations are
// ambiguous (IST, CST) and Go would silently treat them as offset zero.
func knownZone(s string) bool {
	return strings.HasSuffix(s, " UTC") || strings.HasSuffix(s, " GMT")
}
