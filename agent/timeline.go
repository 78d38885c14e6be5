package agent

import (
	"fmt"
	"sort"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/jobs"
	"github.com/tidemark/tidemark/internal/progress"
)

// The page's picture of one stream: time runs left to right up to now;
// green is what a restore can reach, red what a gap took away, amber what
// the server wrote that is not durable in the repository yet; blue marks
// are base backups (at the moment they became restorable), purple diamonds
// drills with their RTO.

// Geometry of a timeline, in SVG user units.
const (
	tlWidth  = 960.0
	tlLeft   = 12.0
	tlRight  = tlWidth - 12.0
	tlHeight = 112.0
)

type pageView struct {
	Now string
	DBs []dbView
}

type dbView struct {
	Name, Engine, Repo string
	RPO                string
	RPOBad             bool
	Facts              []string
	Err                string
	Running            []string // operations in progress
	Timelines          []timelineView
	Problems           []string
}

type timelineView struct {
	Stream                  string
	Width, Height           float64
	Axis                    []tick
	Windows, Gaps, Pending  []span
	Backups, Drills         []mark
	WindowText, PendingText string
}

type span struct {
	X, W  float64
	Title string
}

type mark struct {
	X            float64
	Label, Title string
	OK           bool
}

type tick struct {
	X     float64
	Label string
}

// axis maps times onto the timeline.
type axis struct{ from, to time.Time }

func (a axis) x(t time.Time) float64 {
	f := float64(t.Sub(a.from)) / float64(a.to.Sub(a.from))
	return tlLeft + min(max(f, 0), 1)*(tlRight-tlLeft)
}

func (a axis) span(from, to time.Time, title string) span {
	x1, x2 := a.x(from), a.x(to)
	return span{X: x1, W: max(x2-x1, 2), Title: title}
}

// viewOf builds a database's section of the page.
func viewOf(e boardEntry, now time.Time) dbView {
	v := dbView{Name: e.db.Name, Repo: e.db.Repo}
	switch {
	case e.rpoKnown:
		v.RPO, v.RPOBad = human(e.rpo), !e.streamUp
		if !e.streamUp {
			v.RPO += " (stream down)"
		}
	case e.db.Stream == nil || !e.db.Stream.Enabled:
		v.RPO = "no stream: a restore reaches the newest backup at best"
		v.RPOBad = true
	default:
		v.RPO = "not measured yet"
	}
	if e.err != nil {
		v.Err = e.err.Error()
	}
	st := e.status
	if st == nil {
		return v
	}
	if st.Source != nil {
		v.Engine = st.Source.Engine
	}
	for _, s := range st.Streamers {
		v.Facts = append(v.Facts, fmt.Sprintf("%s streamer %s", s.Stream, s.Health))
	}
	v.Facts = append(v.Facts, fmt.Sprintf("%d backups", len(st.Backups)))
	for _, o := range st.Operations {
		v.Running = append(v.Running, o.Summary)
	}
	if d := st.LastDrill; d != nil {
		outcome := "ok"
		if !d.OK {
			outcome = "FAILED"
		}
		v.Facts = append(v.Facts, fmt.Sprintf("last drill %s %s, RTO %s", d.Started.UTC().Format("2006-01-02 15:04Z"), outcome, seconds(d.RTOSeconds)))
	}
	if lv := st.LastVerify; lv != nil {
		outcome := "ok"
		if !lv.OK {
			outcome = fmt.Sprintf("%d problems", lv.Problems)
		}
		v.Facts = append(v.Facts, fmt.Sprintf("last verify %s %s", lv.Started.UTC().Format("2006-01-02 15:04Z"), outcome))
	}
	ax := axisOf(e.db, st, now)
	for _, s := range st.Streams {
		v.Timelines = append(v.Timelines, timelineOf(ax, e, st, s, now))
		v.Problems = append(v.Problems, s.Gaps...)
	}
	if len(st.Streams) == 0 {
		v.Problems = append(v.Problems, "no archived stream yet: nothing can be restored to a point in time")
	}
	return v
}

// axisOf spans the retention period (pitr_window) and everything the
// repository holds, up to now.
func axisOf(db Database, st *jobs.StatusReport, now time.Time) axis {
	from := now.Add(-time.Hour)
	if r := db.Retention; r != nil && r.PITRWindow > 0 {
		from = now.Add(-time.Duration(r.PITRWindow))
	}
	earlier := func(t time.Time) {
		if !t.IsZero() && t.Before(from) {
			from = t
		}
	}
	for _, b := range st.Backups {
		earlier(b.Started)
	}
	for _, g := range st.Gaps {
		earlier(g.Detected)
	}
	if d := st.LastDrill; d != nil {
		earlier(d.Started)
	}
	from = from.Add(-now.Sub(from) / 40) // a margin before the oldest mark
	return axis{from: from, to: now}
}

func timelineOf(ax axis, e boardEntry, st *jobs.StatusReport, s jobs.StreamEntry, now time.Time) timelineView {
	tv := timelineView{Stream: s.Stream, Width: tlWidth, Height: tlHeight, Axis: ticks(ax)}
	var paired []archive.BackupSummary
	for _, b := range st.Backups {
		if s.Pairs(b.Engine, b.Stream) && !b.Finished.IsZero() {
			paired = append(paired, b)
			tv.Backups = append(tv.Backups, mark{X: ax.x(b.Finished), Title: fmt.Sprintf("backup %s (%s), restorable from %s, %s logical",
				b.ID, b.Type, b.Finished.UTC().Format(time.RFC3339), progress.FormatBytes(b.Logical))})
		}
	}
	gaps := gapSpans(st.Gaps, s.Engine, paired, now)
	for _, g := range gaps {
		tv.Gaps = append(tv.Gaps, ax.span(g.from, g.to, g.title))
	}
	// The window ends where the archive is known to hold everything the
	// server wrote: the agent's RPO says how far back that is.
	var end time.Time
	if s.Latest != nil {
		end = *s.Latest
	}
	if e.rpoKnown && now.Add(-e.rpo).After(end) {
		end = now.Add(-e.rpo)
	}
	if !end.IsZero() && end.Before(now) {
		tv.Pending = append(tv.Pending, ax.span(end, now, "written by the server, not durable in the repository yet (or nothing written since)"))
		tv.PendingText = "newest durable change " + end.UTC().Format("2006-01-02 15:04:05Z")
	}
	if s.Earliest != nil && !end.IsZero() {
		for _, w := range subtract(interval{*s.Earliest, end, ""}, gaps) {
			tv.Windows = append(tv.Windows, ax.span(w.from, w.to, fmt.Sprintf("recoverable %s – %s", w.from.UTC().Format(time.RFC3339), w.to.UTC().Format(time.RFC3339))))
		}
		tv.WindowText = fmt.Sprintf("recoverable from %s to %s", s.Earliest.UTC().Format("2006-01-02 15:04:05Z"), end.UTC().Format("2006-01-02 15:04:05Z"))
		if len(tv.Windows) > 1 {
			tv.WindowText += fmt.Sprintf(", broken by %d gaps", len(tv.Windows)-1)
		}
	} else {
		tv.WindowText = "no base backup yet: nothing is recoverable"
	}
	if d := st.LastDrill; d != nil && !d.Started.IsZero() {
		tv.Drills = append(tv.Drills, mark{X: ax.x(d.Started), Label: "RTO " + seconds(d.RTOSeconds), OK: d.OK,
			Title: fmt.Sprintf("drill of backup %s to %s: restore %s + recovery %s, %d tables, %d problems",
				d.Backup, d.Target, seconds(d.RestoreSeconds), seconds(d.RecoverySeconds), d.Tables, d.Problems)})
	}
	return tv
}

type interval struct {
	from, to time.Time
	title    string
}

// gapSpans: after a gap the stream cannot be replayed across it, so
// nothing is recoverable from the gap until the next base backup after it
// became restorable.
func gapSpans(recorded []archive.GapRecord, engine string, backups []archive.BackupSummary, now time.Time) []interval {
	var out []interval
	for _, g := range recorded {
		if g.Engine != engine {
			continue
		}
		to := now
		for _, b := range backups {
			if b.Finished.After(g.Detected) && b.Finished.Before(to) {
				to = b.Finished
			}
		}
		out = append(out, interval{g.Detected, to, fmt.Sprintf("gap: stream stopped at %s (%s); not recoverable until the next backup", g.From, g.Reason)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].from.Before(out[j].from) })
	return out
}

// subtract removes the gaps from w.
func subtract(w interval, gaps []interval) []interval {
	var out []interval
	cur := w.from
	for _, g := range gaps {
		if !g.to.After(cur) || !g.from.Before(w.to) {
			continue
		}
		if g.from.After(cur) {
			out = append(out, interval{cur, g.from, ""})
		}
		cur = g.to
	}
	if cur.Before(w.to) {
		out = append(out, interval{cur, w.to, ""})
	}
	return out
}

// ticks labels the axis at a round step giving about six marks.
func ticks(ax axis) []tick {
	steps := []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour,
		12 * time.Hour, 24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour, 30 * 24 * time.Hour}
	span := ax.to.Sub(ax.from)
	step := steps[len(steps)-1]
	for _, s := range steps {
		if span/s <= 7 {
			step = s
			break
		}
	}
	layout := "15:04"
	if step >= 24*time.Hour {
		layout = "Jan 02"
	} else if span > 24*time.Hour {
		layout = "Jan 02 15:04"
	}
	var out []tick
	for t := ax.from.UTC().Truncate(step).Add(step); t.Before(ax.to); t = t.Add(step) {
		out = append(out, tick{X: ax.x(t), Label: t.UTC().Format(layout)})
	}
	return out
}

// human is a duration for people: "0.8 s", "4m05s", "3h10m", "2d04h".
func human(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

func seconds(s float64) string { return human(time.Duration(s * float64(time.Second))) }
