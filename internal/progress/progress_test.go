package progress

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

// TestLineTerminal: totals, a bar, a rate only once measured, an ETA.
func TestLineTerminal(t *testing.T) {
	var out bytes.Buffer
	c := &clock{t: time.Unix(1000, 0)}
	on := true
	l := NewWith(&out, Options{TTY: &on, Clock: c.now})
	l.Update(Update{Phase: "replay", Unit: "entries", Done: 0, Total: 4000})
	first := out.String()
	if strings.Contains(first, "/s") || !strings.Contains(first, "replay: 0 of 4,000 entries   0% [") {
		t.Fatalf("first draw %q: want totals and no rate", first)
	}
	c.advance(2 * time.Second)
	out.Reset()
	l.Update(Update{Phase: "replay", Unit: "entries", Done: 1000, Total: 4000})
	got := out.String()
	for _, want := range []string{"1,000 of 4,000 entries", " 25%", "[=====               ]", "500/s", "6s left"} {
		if !strings.Contains(got, want) {
			t.Errorf("draw %q lacks %q", got, want)
		}
	}
	// Throttled: a second update within the draw interval draws nothing.
	out.Reset()
	l.Update(Update{Phase: "replay", Unit: "entries", Done: 1001, Total: 4000})
	if out.Len() != 0 {
		t.Errorf("redrawn within %s: %q", drawEvery, out.String())
	}
	// A new phase starts its own rate.
	c.advance(time.Second)
	out.Reset()
	l.Update(Update{Phase: "load", Unit: "bytes", Done: 3 << 20, Total: 6 << 20})
	if got := out.String(); strings.Contains(got, "/s") || !strings.Contains(got, "load: 3.0 MiB of 6.0 MiB  50%") {
		t.Errorf("new phase drew %q", got)
	}
	l.Done()
	if !strings.HasSuffix(out.String(), "\r") {
		t.Errorf("Done did not clear the line: %q", out.String())
	}
}

// TestLineLogs: without a terminal, a log line every LogEvery and none
// in between; nothing is drawn.
func TestLineLogs(t *testing.T) {
	var out, logs bytes.Buffer
	c := &clock{t: time.Unix(1000, 0)}
	off := false
	l := NewWith(&out, Options{TTY: &off, Clock: c.now, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	for i := range 25 {
		l.Update(Update{Phase: "replay", Unit: "entries", Done: int64(i * 100), Total: 2500})
		c.advance(time.Second)
	}
	l.Done()
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if out.Len() != 0 {
		t.Errorf("drew without a terminal: %q", out.String())
	}
	// Logged at 10 s and 20 s, and the end at Done.
	if len(lines) != 3 {
		t.Fatalf("want 3 log lines, got %d:\n%s", len(lines), logs.String())
	}
	if !strings.Contains(lines[0], "replay: 1,000 of 2,500 entries") || !strings.Contains(lines[0], "100/s") || !strings.Contains(lines[0], "15s left") {
		t.Errorf("first log line %q", lines[0])
	}
	if !strings.Contains(lines[2], "2,400 of 2,500") {
		t.Errorf("last log line %q", lines[2])
	}
}

func TestFormatCountETA(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := FormatCount(n); got != want {
			t.Errorf("FormatCount(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{45 * time.Second: "45s", 190 * time.Second: "3m10s", 2*time.Hour + 5*time.Minute: "2h05m"} {
		if got := FormatETA(d); got != want {
			t.Errorf("FormatETA(%s) = %q, want %q", d, got, want)
		}
	}
}
