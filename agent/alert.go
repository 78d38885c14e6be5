package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/smtp"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// Alerter tells people when something slips, once when it starts, again
// every Repeat while it stands, and once when it is resolved. Destinations:
// a Slack/Mattermost-compatible webhook (JSON {"text": …}) and SMTP mail.
type Alerter struct {
	WebhookURL string // read from the config's webhook_url_file
	SMTP       *SMTP
	smtpPass   string
	Repeat     time.Duration
	Log        *slog.Logger
	Metrics    *Metrics
	Now        func() time.Time
	Client     *http.Client

	mu       sync.Mutex
	standing map[string]standingAlert
}

type standingAlert struct {
	Database string    `json:"database"`
	Kind     string    `json:"kind"`
	Message  string    `json:"message"`
	Since    time.Time `json:"since"`
	sent     time.Time
}

// NewAlerter reads the secrets the config names (files, never inline).
func NewAlerter(c Alerts, log *slog.Logger, m *Metrics) (*Alerter, error) {
	a := &Alerter{SMTP: c.SMTP, Repeat: time.Duration(c.Repeat), Log: log, Metrics: m, Now: time.Now,
		Client: &http.Client{Timeout: 15 * time.Second}, standing: map[string]standingAlert{}}
	if a.Repeat <= 0 {
		a.Repeat = time.Hour
	}
	if c.WebhookURLFile != "" {
		b, err := os.ReadFile(c.WebhookURLFile)
		if err != nil {
			return nil, fmt.Errorf("alerts: webhook URL: %w", err)
		}
		a.WebhookURL = strings.TrimSpace(string(b))
	}
	if c.SMTP != nil && c.SMTP.PasswordFile != "" {
		b, err := os.ReadFile(c.SMTP.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("alerts: SMTP password: %w", err)
		}
		a.smtpPass = strings.TrimRight(string(b), "\r\n")
	}
	return a, nil
}

// Raise reports a problem of kind for db; repeated calls while it stands
// only re-send every Repeat.
func (a *Alerter) Raise(ctx context.Context, db, kind, msg string) {
	now := a.Now()
	key := db + "\x00" + kind
	a.mu.Lock()
	s, ok := a.standing[key]
	if !ok {
		s = standingAlert{Database: db, Kind: kind, Since: now}
	}
	s.Message = msg
	send := !ok || now.Sub(s.sent) >= a.Repeat
	if send {
		s.sent = now
	}
	a.standing[key] = s
	a.mu.Unlock()
	a.Metrics.standing.WithLabelValues(db, kind).Set(1)
	if send {
		a.Metrics.alerts.WithLabelValues(db, kind).Inc()
		a.notify(ctx, db, fmt.Sprintf("[tidemark] %s: %s", db, msg))
	}
}

// Resolve clears a standing alert and says so.
func (a *Alerter) Resolve(ctx context.Context, db, kind string) {
	key := db + "\x00" + kind
	a.mu.Lock()
	s, ok := a.standing[key]
	delete(a.standing, key)
	a.mu.Unlock()
	if ok {
		a.Metrics.standing.WithLabelValues(db, kind).Set(0)
		a.notify(ctx, db, fmt.Sprintf("[tidemark] %s: resolved after %s: %s", db, a.Now().Sub(s.Since).Round(time.Second), s.Message))
	}
}

// Standing lists the alerts that stand, for /healthz.
func (a *Alerter) Standing() []standingAlert {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]standingAlert, 0, len(a.standing))
	for _, s := range a.standing {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Database+out[i].Kind < out[j].Database+out[j].Kind })
	return out
}

func (a *Alerter) notify(ctx context.Context, db, text string) {
	log := a.Log.With("database", db)
	log.Warn("alert", "text", text)
	if a.WebhookURL != "" {
		if err := a.postWebhook(ctx, text); err != nil {
			log.Error("alert webhook failed", "err", err)
		}
	}
	if a.SMTP != nil {
		if err := a.sendMail(text); err != nil {
			log.Error("alert mail failed", "err", err)
		}
	}
}

func (a *Alerter) postWebhook(ctx context.Context, text string) error {
	body, _ := json.Marshal(map[string]string{"text": text})
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err) // the URL itself may hold a token: never print it
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.Client.Do(req)
	if err != nil {
		return fmt.Errorf("post webhook to %s: %w", req.URL.Host, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook at %s answered %s", req.URL.Host, resp.Status)
	}
	return nil
}

func (a *Alerter) sendMail(text string) error {
	s := a.SMTP
	var auth smtp.Auth
	if s.Username != "" {
		host, _, _ := strings.Cut(s.Addr, ":")
		auth = smtp.PlainAuth("", s.Username, a.smtpPass, host)
	}
	subject, _, _ := strings.Cut(text, "\n")
	msg := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n",
		s.From, strings.Join(s.To, ", "), subject, text)
	if err := smtp.SendMail(s.Addr, auth, s.From, s.To, []byte(msg)); err != nil {
		return fmt.Errorf("send alert mail via %s: %w", s.Addr, err)
	}
	return nil
}
