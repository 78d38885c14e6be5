package agent

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/jobs"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/restore"
)

// pageStatus is a day of a PostgreSQL repository: three backups, a gap
// the streamer recorded between the first two, a drill. (A gap cannot be
// had from a real server on demand; the agent's page over a real
// repository is checked in cmd/tidemark's agent test.)
func pageStatus(now time.Time) *jobs.StatusReport {
	backup := func(id string, finished time.Duration) archive.BackupSummary {
		f := now.Add(-finished)
		return archive.BackupSummary{ID: id, Engine: "postgres", Type: "full", Started: f.Add(-10 * time.Minute), Finished: f, Logical: 3 << 30}
	}
	latest := now.Add(-time.Minute)
	b := []archive.BackupSummary{backup("b1", 20*time.Hour), backup("b2", 12*time.Hour), backup("b3", 2*time.Hour)}
	earliest := b[0].Finished
	return &jobs.StatusReport{
		Source:  &archive.Source{Engine: "postgres"},
		Backups: b,
		Gaps:    []archive.GapRecord{{Engine: "postgres", Detected: now.Add(-16 * time.Hour), From: "0/5000000", Reason: "slot invalidated"}},
		Streams: []jobs.StreamEntry{{StreamStatus: engine.StreamStatus{Engine: "postgres", Stream: "wal", Latest: &latest,
			Gaps: []string{"stream stopped at 0/5000000: slot invalidated"}}, Earliest: &earliest}},
		LastDrill:  &restore.DrillReport{Started: now.Add(-5 * time.Hour), Backup: "b2", RTOSeconds: 42, OK: true},
		Streamers:  []jobs.Streamer{{Heartbeat: archive.Heartbeat{Engine: "postgres", Stream: "WAL", State: archive.StreamStreaming}, Health: jobs.HealthAlive}},
		Operations: []jobs.RunningOperation{{Summary: "verify by db1/42, started 2026-12-06T07:00:00Z: verify 1200 objects"}},
	}
}

// TestPageInChromium: the page at / shows, in a real browser, the
// recoverable window with each backup as a mark, the gap in red, the drill
// with its RTO and the RPO now.
func TestPageInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Unavailable(t, "Chromium", err)
	}
	now := time.Now()
	b := NewBoard(func(context.Context, Database) (*jobs.StatusReport, error) { return pageStatus(now), nil })
	b.configure(&Config{Databases: []Database{{Name: "main", Repo: "s3://backups/main", Stream: &StreamJob{Enabled: true},
		Retention: &RetentionJob{PITRWindow: Duration(24 * time.Hour)}}}})
	b.setRPO("main", 1500*time.Millisecond, true)
	alerts, err := NewAlerter(Alerts{}, slog.New(slog.DiscardHandler), NewMetrics())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewMetrics().Handler(alerts, b))
	defer srv.Close()

	dom := runChromium(t, chromium, "--dump-dom", srv.URL+"/")
	for what, want := range map[string]int{`class="backup"`: 3, `class="gap"`: 1, `class="window"`: 2, `class="drill"`: 1} {
		if n := strings.Count(dom, what); n != want {
			t.Errorf("%s: %d in the page, want %d", what, n, want)
		}
	}
	for _, s := range []string{"RTO 42.0 s", "RPO now", "1.5 s", "slot invalidated", "recoverable from",
		"WAL streamer alive", "running: verify by db1/42"} {
		if !strings.Contains(dom, s) {
			t.Errorf("the page does not say %q", s)
		}
	}

	// Visible, not only present: the screenshot holds the marks' colours.
	shot := filepath.Join(t.TempDir(), "page.png")
	runChromium(t, chromium, "--screenshot="+shot, "--window-size=1100,600", srv.URL+"/")
	img := readPNG(t, shot)
	for name, c := range map[string][3]uint8{"gap": {0xd6, 0x27, 0x28}, "backup": {0x1f, 0x77, 0xb4}, "window": {0x8f, 0xd1, 0x9e}, "drill": {0x6a, 0x3d, 0x9a}} {
		// The legend shows each colour in a 12×12 swatch: more than that
		// is the timeline's.
		if n := countColour(img, c); n < 200 {
			t.Errorf("%s colour: %d pixels on screen", name, n)
		}
	}
	if t.Failed() {
		t.Logf("page:\n%s", dom)
	}
}

func runChromium(t *testing.T, chromium string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--force-device-scale-factor=1", "--user-data-dir=" + t.TempDir()}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, chromium, append(base, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	return out.String()
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func countColour(img image.Image, c [3]uint8) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if uint8(r>>8) == c[0] && uint8(g>>8) == c[1] && uint8(bl>>8) == c[2] {
				n++
			}
		}
	}
	return n
}
