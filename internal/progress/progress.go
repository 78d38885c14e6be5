// Package progress draws a one-line progress display on a terminal and stays
// silent otherwise (logs and --json carry the results for machines).
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
)

// Line redraws a single status line at most every interval.
type Line struct {
	mu      sync.Mutex
	w       io.Writer
	enabled bool
	last    time.Time
	start   time.Time
	width   int
}

// New returns a Line drawing on w when w is a terminal.
func New(w io.Writer) *Line {
	l := &Line{w: w, start: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		l.enabled = true
	}
	return l
}

// Bytes shows a count of items and bytes with the average rate.
func (l *Line) Bytes(what string, items, bytes, totalBytes int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.enabled || time.Since(l.last) < 200*time.Millisecond {
		return
	}
	l.last = time.Now()
	rate := float64(bytes) / time.Since(l.start).Seconds() / (1 << 20)
	s := fmt.Sprintf("%s: %d, %.1f MiB (%.1f MiB/s)", what, items, float64(bytes)/(1<<20), rate)
	if totalBytes > 0 {
		s += fmt.Sprintf(" %5.1f%%", 100*float64(bytes)/float64(totalBytes))
	}
	l.draw(s)
}

func (l *Line) draw(s string) {
	pad := l.width - len(s)
	l.width = len(s)
	if pad < 0 {
		pad = 0
	}
	fmt.Fprintf(l.w, "\r%s%*s", s, pad, "")
}

// Done clears the line.
func (l *Line) Done() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.enabled && l.width > 0 {
		fmt.Fprintf(l.w, "\r%*s\r", l.width, "")
		l.width = 0
	}
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
