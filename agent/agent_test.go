package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/jobs"
)

// failingRunner fails everything, so the test sees each alert path. The
// real jobs run against PostgreSQL in cmd/tidemark's agent test.
type failingRunner struct{}

func (failingRunner) Stream(ctx context.Context, _ Database, _ StreamHooks) error {
	return errors.New("connection refused")
}
func (failingRunner) Backup(context.Context, Database) (BackupResult, error) {
	return BackupResult{}, errors.New("server closed the connection")
}
func (failingRunner) Expire(context.Context, Database) error { return nil }
func (failingRunner) Verify(context.Context, Database) error { return errors.New("2 problems") }
func (failingRunner) Drill(context.Context, Database) (DrillResult, error) {
	return DrillResult{}, nil
}
func (failingRunner) Repository(context.Context, Database) (RepoSummary, error) {
	return RepoSummary{}, nil
}
func (failingRunner) Status(context.Context, Database) (*jobs.StatusReport, error) {
	return nil, errors.New("unreachable")
}

func TestAgentAlertsOnFailuresAndMissedBackups(t *testing.T) {
	var mu sync.Mutex
	var got []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Text string }
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &body)
		mu.Lock()
		got = append(got, body.Text)
		mu.Unlock()
	}))
	defer hook.Close()
	log := slog.New(slog.DiscardHandler)
	m := NewMetrics()
	alerts, err := NewAlerter(Alerts{}, log, m)
	if err != nil {
		t.Fatal(err)
	}
	alerts.WebhookURL = hook.URL
	cfg := &Config{Databases: []Database{{Name: "main", Source: "postgres://x/", Repo: "/r",
		Stream: &StreamJob{Enabled: true},
		Backup: &BackupJob{Scheduled: Scheduled{Schedule: "@every 1s"}},
		Verify: &Scheduled{Schedule: "@every 1s"}}}}
	ag := &Agent{Runner: failingRunner{}, Log: log, Metrics: m, Alerts: alerts, MissedGrace: 100 * time.Millisecond, Tick: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ag.Run(ctx, cfg); close(done) }()
	want := []string{"main: stream down: connection refused", "main: backup failed: server closed the connection",
		"main: verify failed: 2 problems", "main: no successful backup since"}
	deadline := time.Now().Add(time.Minute)
	for {
		mu.Lock()
		all := strings.Join(got, "\n")
		mu.Unlock()
		missing := ""
		for _, w := range want {
			if !strings.Contains(all, w) {
				missing = w
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no alert %q; got:\n%s", missing, all)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Standing alerts are not re-sent before Repeat, and /healthz reports them.
	mu.Lock()
	n := strings.Count(strings.Join(got, "\n"), "stream down")
	mu.Unlock()
	if n != 1 {
		t.Fatalf("stream alert sent %d times", n)
	}
	rec := httptest.NewRecorder()
	m.Handler(alerts, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "missed_backup") {
		t.Fatalf("/healthz: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	m.Handler(alerts, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `tidemark_job_failures_total{database="main",job="backup"}`) ||
		!strings.Contains(rec.Body.String(), `tidemark_stream_restarts_total{database="main"}`) {
		t.Fatalf("/metrics:\n%s", rec.Body)
	}
	cancel()
	<-done
}

// TestDedupRatio: the ratio compares the backups' logical bytes with what
// their chunks occupy, not with the whole repository (whose archived
// stream would make three backups of 3 GiB beside 30 GiB of WAL read 0.3).
func TestDedupRatio(t *testing.T) {
	m := NewMetrics()
	m.repository("main", RepoSummary{Logical: 9 << 30, Stored: 33 << 30, BackupStored: 3 << 30})
	rec := httptest.NewRecorder()
	m.Handler(nil, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `tidemark_dedup_ratio{database="main"} 3`+"\n") {
		t.Fatalf("/metrics:\n%s", rec.Body)
	}
}
