package agent

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the agent's Prometheus series, labelled by database.
type Metrics struct {
	reg               *prometheus.Registry
	names             []string
	streamUp          *prometheus.GaugeVec
	streamConnected   *prometheus.GaugeVec
	heartbeat         *prometheus.GaugeVec
	heartbeatFailures *prometheus.CounterVec
	streamRestarts    *prometheus.CounterVec
	rpo               *prometheus.GaugeVec
	lagBytes          *prometheus.GaugeVec
	lastBackup        *prometheus.GaugeVec
	stored            *prometheus.GaugeVec
	logical           *prometheus.GaugeVec
	dedupRatio        *prometheus.GaugeVec
	compression       *prometheus.GaugeVec
	jobLastRun        *prometheus.GaugeVec
	jobLastOK         *prometheus.GaugeVec
	jobDuration       *prometheus.GaugeVec
	jobFailures       *prometheus.CounterVec
	drillRTO          *prometheus.GaugeVec
	alerts            *prometheus.CounterVec
	standing          *prometheus.GaugeVec
}

// NewMetrics registers the agent's series in a registry of its own.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	var names []string
	db := []string{"database"}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "tidemark", Name: name, Help: help}, labels)
		reg.MustRegister(g)
		names = append(names, "tidemark_"+name)
		return g
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tidemark", Name: name, Help: help}, labels)
		reg.MustRegister(c)
		names = append(names, "tidemark_"+name)
		return c
	}
	m := &Metrics{
		reg:               reg,
		streamUp:          gauge("stream_up", "1 while a session streams from the source; 0 while it reconnects (the source refuses or is gone) or the stream is stopped.", db...),
		streamConnected:   gauge("stream_connected_timestamp_seconds", "When the current (or last) streaming session connected.", db...),
		heartbeat:         gauge("stream_heartbeat_timestamp_seconds", "When the streamer last wrote its heartbeat to the repository.", db...),
		heartbeatFailures: counter("stream_heartbeat_failures_total", "Heartbeat writes the repository refused (a full disk, lost credentials).", db...),
		streamRestarts:    counter("stream_restarts_total", "Times the stream stopped and was restarted.", db...),
		rpo:               gauge("stream_rpo_seconds", "Seconds since the archive last held everything the server had written.", db...),
		lagBytes:          gauge("stream_lag_bytes", "Bytes the server has written that are not durable in the repository yet.", db...),
		lastBackup:        gauge("last_backup_success_timestamp_seconds", "When the newest base backup was committed.", db...),
		stored:            gauge("repository_stored_bytes", "Bytes the repository holds.", db...),
		logical:           gauge("backups_logical_bytes", "Sum of the kept base backups' logical sizes.", db...),
		dedupRatio:        gauge("dedup_ratio", "Logical bytes of the kept base backups per byte their chunks occupy in the repository (deduplication and compression together; the archived stream is not counted).", db...),
		compression:       gauge("last_backup_compression_ratio", "Plaintext per stored byte of the chunks the newest backup added.", db...),
		jobLastRun:        gauge("job_last_run_timestamp_seconds", "When a scheduled job last ran.", "database", "job"),
		jobLastOK:         gauge("job_last_success", "1 if the job's last run succeeded, 0 if it failed.", "database", "job"),
		jobDuration:       gauge("job_last_duration_seconds", "How long the job's last run took.", "database", "job"),
		jobFailures:       counter("job_failures_total", "Failed runs of a scheduled job.", "database", "job"),
		drillRTO:          gauge("drill_rto_seconds", "Restore plus recovery time measured by the last drill.", db...),
		alerts:            counter("alerts_total", "Alerts raised.", "database", "kind"),
		standing:          gauge("alert_active", "1 while an alert stands.", "database", "kind"),
	}
	m.names = names
	return m
}

// Names lists every series name the agent exports, whether or not it has
// a value yet (deploy/'s dashboard and alert rules may name only these).
func (m *Metrics) Names() []string { return append([]string(nil), m.names...) }

func (m *Metrics) repository(db string, s RepoSummary) {
	if !s.NewestBackup.IsZero() {
		m.lastBackup.WithLabelValues(db).Set(float64(s.NewestBackup.Unix()))
	}
	m.stored.WithLabelValues(db).Set(float64(s.Stored))
	m.logical.WithLabelValues(db).Set(float64(s.Logical))
	if s.CompressionRatio > 0 {
		m.compression.WithLabelValues(db).Set(s.CompressionRatio)
	}
	if s.BackupStored > 0 {
		m.dedupRatio.WithLabelValues(db).Set(float64(s.Logical) / float64(s.BackupStored))
	}
}

func (m *Metrics) job(db, job string, start time.Time, took time.Duration, err error) {
	m.jobLastRun.WithLabelValues(db, job).Set(float64(start.Unix()))
	m.jobDuration.WithLabelValues(db, job).Set(took.Seconds())
	if err != nil {
		m.jobLastOK.WithLabelValues(db, job).Set(0)
		m.jobFailures.WithLabelValues(db, job).Inc()
		return
	}
	m.jobLastOK.WithLabelValues(db, job).Set(1)
}

// Handler serves /metrics, /healthz and page at /. /healthz answers 200
// while no alert stands and 503 with the standing alerts otherwise.
func (m *Metrics) Handler(alerts *Alerter, page http.Handler) http.Handler {
	mux := http.NewServeMux()
	if page != nil {
		mux.Handle("/", page)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		standing := alerts.Standing()
		w.Header().Set("Content-Type", "application/json")
		if len(standing) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(map[string]any{"ok": len(standing) == 0, "alerts": standing})
	})
	return mux
}
