package jobs

import (
	"fmt"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/progress"
)

// IdleAfter is how long a caught-up stream may see no change before status
// calls its streamer idle rather than alive.
const IdleAfter = 5 * time.Minute

// Streamer health.
const (
	HealthAlive = "alive"
	HealthIdle  = "idle"
	HealthDown  = "down"
)

// health says whether a streamer is alive, idle or down: down unless it
// streams with a fresh heartbeat; idle when its stream's newest change is
// older than IdleAfter while it keeps catching up.
func health(now time.Time, s Streamer, streams []StreamEntry) string {
	if s.Stale || s.State != archive.StreamStreaming {
		return HealthDown
	}
	for _, e := range streams {
		if e.Engine == s.Engine && e.Latest != nil && now.Sub(*e.Latest) > IdleAfter && e.CaughtUp != nil && now.Sub(*e.CaughtUp) < IdleAfter {
			return HealthIdle
		}
	}
	return HealthAlive
}

// RunningOperation is a running operation's record and what it means now.
type RunningOperation struct {
	archive.Operation
	AgeSec float64 `json:"record_age_seconds"`
	// Abandoned: its process is gone (archive.Operation.Abandoned): the
	// record was not renewed for three intervals, or its holder is a
	// process of this host that no longer exists.
	Abandoned bool `json:"abandoned"`
	// Percent done, when the total is known (else -1).
	Percent float64 `json:"percent"`
	Summary string  `json:"summary"`
}

func runningOperation(now time.Time, o archive.Operation) RunningOperation {
	r := RunningOperation{Operation: o, AgeSec: now.Sub(o.Updated).Seconds(), Abandoned: o.Abandoned(now), Percent: -1}
	what := o.Kind
	if o.Engine != "" {
		what += " (" + o.Engine + ")"
	}
	if o.Subject != "" {
		what += " of " + o.Subject
	}
	r.Summary = fmt.Sprintf("%s by %s, started %s", what, o.Holder, o.Started.UTC().Format(time.RFC3339))
	if o.Phase != "" {
		done := fmt.Sprintf("%d %s", o.Done, o.Unit)
		if o.Unit == "bytes" {
			done = progress.FormatBytes(o.Done)
		}
		r.Summary += fmt.Sprintf(": %s %s", o.Phase, done)
		if o.Total > 0 {
			r.Percent = 100 * float64(min(o.Done, o.Total)) / float64(o.Total)
			total := fmt.Sprintf("%d", o.Total)
			if o.Unit == "bytes" {
				total = progress.FormatBytes(o.Total)
			}
			r.Summary += fmt.Sprintf(" of %s (%.0f%%)", total, r.Percent)
		}
	}
	if r.Abandoned {
		r.Summary += fmt.Sprintf(" — ABANDONED: last update %s; its process is gone (or cannot write here)", o.Updated.UTC().Format(time.RFC3339))
	}
	return r
}
