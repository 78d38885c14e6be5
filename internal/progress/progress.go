// Package progress reports long work: on a terminal a redrawn line with a
// bar, the rate and the time left; otherwise a log line every LogEvery, so
// a restore under systemd or in CI is not silent for minutes.
package progress

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

const (
	// drawEvery bounds terminal redraws.
	drawEvery = 200 * time.Millisecond
	// LogEvery is how often a line is logged when there is no terminal.
	LogEvery = 10 * time.Second
	// minRateWindow: a rate (and with it an ETA) is shown only after this
	// much of a phase, so the first draw never reads "0.0 MiB/s".
	minRateWindow = time.Second
	barWidth      = 20
)

// Update is where one phase of work stands.
type Update struct {
	Phase string // "restore", "load", "replay", …
	Unit  string // "bytes" or what Done counts ("entries", "rows", …)
	Done  int64
	Total int64 // 0 when unknown
	Bytes int64 // bytes moved so far when Unit counts something else
}

// Line draws updates on a terminal or logs them periodically.
type Line struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	log   *slog.Logger
	now   func() time.Time
	width int

	phase      string
	phaseStart time.Time
	lastDraw   time.Time
	lastLog    time.Time
	last       Update
}

// Options configure a Line; the zero value detects a terminal on w and
// logs nothing otherwise.
type Options struct {
	Log   *slog.Logger     // where periodic lines go without a terminal (nil: none)
	TTY   *bool            // force terminal drawing on or off (nil: detect)
	Clock func() time.Time // nil: time.Now
}

// New returns a Line drawing on w when w is a terminal.
func New(w io.Writer) *Line { return NewWith(w, Options{}) }

// NewWith returns a Line with options.
func NewWith(w io.Writer, o Options) *Line {
	l := &Line{w: w, log: o.Log, now: o.Clock}
	if l.now == nil {
		l.now = time.Now
	}
	if o.TTY != nil {
		l.tty = *o.TTY
	} else if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		l.tty = true
	}
	return l
}

// Bytes shows a count of items and bytes (the older form of Update).
func (l *Line) Bytes(what string, items, bytes, totalBytes int64) {
	l.Update(Update{Phase: what, Unit: "bytes", Done: bytes, Total: totalBytes})
}

// Update reports where a phase stands; a new phase restarts the rate.
func (l *Line) Update(u Update) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if u.Phase != l.phase {
		l.phase, l.phaseStart, l.lastLog = u.Phase, now, now
		l.lastDraw = time.Time{}
	}
	l.last = u
	if l.tty {
		if now.Sub(l.lastDraw) >= drawEvery {
			l.lastDraw = now
			l.draw(l.format(u, now, true))
		}
		return
	}
	if l.log != nil && now.Sub(l.lastLog) >= LogEvery {
		l.lastLog = now
		l.log.Info(l.format(u, now, false))
	}
}

// format renders u: "replay: 1,200 of 3,500 entries (34%) [======>      ] 240/s, 9s left".
func (l *Line) format(u Update, now time.Time, bar bool) string {
	var b strings.Builder
	b.WriteString(u.Phase + ": ")
	count := func(n int64) string {
		if u.Unit == "bytes" {
			return FormatBytes(n)
		}
		return FormatCount(n)
	}
	b.WriteString(count(u.Done))
	if u.Total > 0 {
		b.WriteString(" of " + count(u.Total))
	}
	if u.Unit != "bytes" && u.Unit != "" {
		b.WriteString(" " + u.Unit)
		if u.Bytes > 0 {
			b.WriteString(" (" + FormatBytes(u.Bytes) + ")")
		}
	}
	if u.Total > 0 {
		frac := min(float64(u.Done)/float64(u.Total), 1)
		fmt.Fprintf(&b, " %3.0f%%", 100*frac)
		if bar {
			n := int(frac * barWidth)
			b.WriteString(" [" + strings.Repeat("=", n) + strings.Repeat(" ", barWidth-n) + "]")
		}
	}
	elapsed := now.Sub(l.phaseStart)
	if elapsed < minRateWindow || u.Done <= 0 {
		return b.String()
	}
	rate := float64(u.Done) / elapsed.Seconds()
	if u.Unit == "bytes" {
		b.WriteString(", " + FormatBytes(int64(rate)) + "/s")
	} else {
		b.WriteString(", " + FormatCount(int64(rate)) + "/s")
	}
	if u.Total > u.Done {
		left := time.Duration(float64(u.Total-u.Done) / rate * float64(time.Second))
		b.WriteString(", " + FormatETA(left) + " left")
	}
	return b.String()
}

func (l *Line) draw(s string) {
	pad := l.width - len(s)
	l.width = len(s)
	if pad < 0 {
		pad = 0
	}
	fmt.Fprintf(l.w, "\r%s%*s", s, pad, "")
}

// Done clears the line; without a terminal it logs where the last phase
// ended when that phase was long enough to have logged before.
func (l *Line) Done() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tty && l.width > 0 {
		fmt.Fprintf(l.w, "\r%*s\r", l.width, "")
		l.width = 0
	}
	if !l.tty && l.log != nil && l.phase != "" && l.now().Sub(l.phaseStart) >= LogEvery {
		l.log.Info(l.format(l.last, l.now(), false))
	}
	l.phase = ""
}

// FormatBytes is n in binary units for people: "512 B", "1.5 GiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// FormatCount groups thousands: 1234567 → "1,234,567".
func FormatCount(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// FormatETA rounds a remaining time for people: "45s", "3m10s", "2h05m".
func FormatETA(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Round(time.Second).Seconds()))
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
}
