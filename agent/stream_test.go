package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/jobs"
	"github.com/tidemark/tidemark/internal/supervise"
	"github.com/tidemark/tidemark/internal/testenv"
)

// scriptedRunner streams as its script says; backups succeed once the
// gate (when set) is opened.
type scriptedRunner struct {
	streams atomic.Int32
	stream  func(ctx context.Context, n int32, hooks StreamHooks) error
	gate    chan struct{}
}

func (r *scriptedRunner) Stream(ctx context.Context, _ Database, hooks StreamHooks) error {
	return r.stream(ctx, r.streams.Add(1), hooks)
}
func (r *scriptedRunner) Backup(ctx context.Context, _ Database) (BackupResult, error) {
	if r.gate != nil {
		select {
		case <-r.gate:
		case <-ctx.Done():
			return BackupResult{}, ctx.Err()
		}
	}
	return BackupResult{ID: "b"}, nil
}
func (*scriptedRunner) Expire(context.Context, Database) error { return nil }
func (*scriptedRunner) Verify(context.Context, Database) error { return nil }
func (*scriptedRunner) Drill(context.Context, Database) (DrillResult, error) {
	return DrillResult{}, nil
}
func (*scriptedRunner) Repository(context.Context, Database) (RepoSummary, error) {
	return RepoSummary{}, nil
}
func (*scriptedRunner) Status(context.Context, Database) (*jobs.StatusReport, error) {
	return &jobs.StatusReport{}, nil
}

// logBuffer collects JSON log records from the agent's goroutines.
type logBuffer struct{ testenv.LockedBuffer }

func (l *logBuffer) records(t *testing.T) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

type agentTest struct {
	t       *testing.T
	ag      *Agent
	logs    *logBuffer
	cancel  context.CancelFunc
	done    chan struct{}
	metrics *Metrics
	alerts  *Alerter
}

func runAgent(t *testing.T, r Runner, db Database) *agentTest {
	t.Helper()
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	m := NewMetrics()
	alerts, err := NewAlerter(Alerts{}, log, m)
	if err != nil {
		t.Fatal(err)
	}
	at := &agentTest{t: t, logs: logs, metrics: m, alerts: alerts, done: make(chan struct{}),
		ag: &Agent{Runner: r, Log: log, Metrics: m, Alerts: alerts, Tick: 20 * time.Millisecond, StreamDownGrace: 300 * time.Millisecond}}
	ctx, cancel := context.WithCancel(context.Background())
	at.cancel = cancel
	go func() { at.ag.Run(ctx, &Config{Databases: []Database{db}}); close(at.done) }()
	t.Cleanup(func() { cancel(); <-at.done })
	return at
}

func (at *agentTest) scrape(path string) (int, string) {
	rec := httptest.NewRecorder()
	at.metrics.Handler(at.alerts, nil).ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.String()
}

func (at *agentTest) waitFor(what string, ok func() bool) {
	at.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			_, metrics := at.scrape("/metrics")
			at.t.Fatalf("timed out waiting for %s\nmetrics:\n%s", what, metrics)
		}
	}
}

func (at *agentTest) metric(series string) bool {
	_, body := at.scrape("/metrics")
	return strings.Contains(body, series)
}

// TestPermanentStreamErrorIsNotRetried: a misconfigured source (binary
// logging off) stops the stream: it is alerted with the fix and not
// restarted, until a base backup succeeds.
func TestPermanentStreamErrorIsNotRetried(t *testing.T) {
	misconfigured := fmt.Errorf("%w: binary logging is off on the source: set log_bin and binlog_format=ROW", archive.ErrMisconfigured)
	r := &scriptedRunner{gate: make(chan struct{}), stream: func(ctx context.Context, n int32, _ StreamHooks) error {
		if n == 1 {
			return misconfigured
		}
		<-ctx.Done()
		return nil
	}}
	at := runAgent(t, r, Database{Name: "shop", Stream: &StreamJob{Enabled: true}, Backup: &BackupJob{Scheduled: Scheduled{Schedule: "@every 1s"}}})
	at.waitFor("the alert naming the fix", func() bool {
		code, body := at.scrape("/healthz")
		return code == 503 && strings.Contains(body, "not restarted") && strings.Contains(body, "set log_bin and binlog_format=ROW")
	})
	time.Sleep(500 * time.Millisecond) // a retry loop would have restarted it several times by now
	if n := r.streams.Load(); n != 1 {
		t.Fatalf("the stream was restarted %d times after a permanent error, before any backup", n-1)
	}
	close(r.gate)
	at.waitFor("a successful backup to restart the stream", func() bool { return r.streams.Load() == 2 })
}

// TestStreamDownWhileSourceRefuses: a streamer that runs but cannot
// connect (its sessions fail) is down: stream_up 0 at once, alerted once
// down longer than the grace, with the error, and up again when a session
// streams.
func TestStreamDownWhileSourceRefuses(t *testing.T) {
	refused := errors.New("connect: dial tcp 127.0.0.1:5432: connect: connection refused")
	back := make(chan struct{})
	r := &scriptedRunner{stream: func(ctx context.Context, _ int32, h StreamHooks) error {
		h.Observe(supervise.State{Up: true})
		h.Heartbeat(archive.Heartbeat{Updated: time.Unix(1796046373, 0)}, nil)
		h.Observe(supervise.State{Err: refused, RetryIn: time.Second})
		<-back
		h.Observe(supervise.State{Up: true})
		<-ctx.Done()
		return nil
	}}
	at := runAgent(t, r, Database{Name: "main", Stream: &StreamJob{Enabled: true}})
	at.waitFor("stream_up 0 while refused", func() bool { return at.metric(`tidemark_stream_up{database="main"} 0`) })
	if !at.metric(`tidemark_stream_heartbeat_timestamp_seconds{database="main"} 1.796046373e+09`) {
		t.Fatal("no heartbeat gauge")
	}
	at.waitFor("the stream-down alert", func() bool {
		code, body := at.scrape("/healthz")
		return code == 503 && strings.Contains(body, "stream down since") && strings.Contains(body, "connection refused")
	})
	close(back)
	at.waitFor("stream_up 1 once it streams", func() bool { return at.metric(`tidemark_stream_up{database="main"} 1`) })
	at.waitFor("the alert to resolve", func() bool { code, _ := at.scrape("/healthz"); return code == 200 })
	// Every line of the agent about this database names it.
	for _, rec := range at.logs.records(t) {
		if rec["database"] != "main" {
			t.Errorf("log line without its database: %v", rec)
		}
	}
}

// TestHeartbeatFailureAlerts: a streamer that cannot write its heartbeat
// (a full disk) is counted and alerted.
func TestHeartbeatFailureAlerts(t *testing.T) {
	r := &scriptedRunner{stream: func(ctx context.Context, _ int32, h StreamHooks) error {
		h.Observe(supervise.State{Up: true})
		h.Heartbeat(archive.Heartbeat{}, errors.New("file put heartbeats/postgres/x: no space left on device"))
		<-ctx.Done()
		return nil
	}}
	at := runAgent(t, r, Database{Name: "main", Stream: &StreamJob{Enabled: true}})
	at.waitFor("the heartbeat alert", func() bool {
		code, body := at.scrape("/healthz")
		return code == 503 && strings.Contains(body, "no space left on device")
	})
	if !at.metric(`tidemark_stream_heartbeat_failures_total{database="main"} 1`) {
		t.Fatal("heartbeat failure not counted")
	}
}
