package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/internal/testenv"
)

// TestAgentStreamDownAndMisconfigured: the agent runs two databases.
// PostgreSQL is stopped under its stream: stream_up drops to 0 at once and
// /healthz turns 503 once it is down past stream_down_after, and both
// recover when the server is back; every log line about it names it.
// MariaDB runs without binary logging: its stream stops at once, is
// alerted with the fix and is not retried.
func TestAgentStreamDownAndMisconfigured(t *testing.T) {
	pg := testenv.NewPostgreSQL(t, testenv.PostgresOptions{})
	my := testenv.NewMariaDB(t, testenv.MariaDBOptions{Args: []string{"--skip-log-bin"}})
	dir := t.TempDir()
	key, id := keyFile(t)
	pgRepo, myRepo := filepath.Join(dir, "pg"), filepath.Join(dir, "my")
	for _, r := range []string{pgRepo, myRepo} {
		expect(t, 0, "init", "--repo", r, "--recipient", id.Recipient().String())
	}
	listen := agentListen(t)
	config := filepath.Join(dir, "tidemark.yaml")
	cfg := fmt.Sprintf(`listen: %s
alerts:
  stream_down_after: 2s
databases:
  - name: main
    source: %s
    repo: %s
    identity_file: %s
    stream: {enabled: true, create_slot: true, flush_interval: 200ms}
  - name: shop
    source: %s
    repo: %s
    stream: {enabled: true}
`, listen, pg.URL("postgres"), pgRepo, key, my.URL(), myRepo)
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ar := startAgent(t, config, listen)
	healthz := func() (int, string) {
		resp, err := http.Get("http://" + listen + "/healthz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	ar.waitFor("the PostgreSQL stream", func() bool { return ar.metric(`tidemark_stream_up{database="main"}`) == 1 })
	ar.waitFor("the alert naming the fix for MariaDB", func() bool {
		_, body := healthz()
		return strings.Contains(body, "not restarted") && strings.Contains(body, "set log_bin and binlog_format=ROW")
	})

	pg.Stop()
	ar.waitFor("stream_up 0 while PostgreSQL is down", func() bool { return ar.metric(`tidemark_stream_up{database="main"}`) == 0 })
	ar.waitFor("the stream-down alert", func() bool {
		code, body := healthz()
		return code == 503 && strings.Contains(body, `"main"`) && strings.Contains(body, "stream down since")
	})
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	ar.waitFor("stream_up 1 once PostgreSQL is back", func() bool { return ar.metric(`tidemark_stream_up{database="main"}`) == 1 })
	ar.waitFor("the stream alert of main to resolve", func() bool {
		_, body := healthz()
		return !strings.Contains(body, `"database":"main"`)
	})
	if _, body := healthz(); !strings.Contains(body, "not restarted") {
		ar.fail("the alert about shop's misconfiguration changed: %s", body)
	}
	if n := ar.metric(`tidemark_stream_restarts_total{database="shop"}`); n != 1 {
		ar.fail("the misconfigured stream was restarted: %v restarts", n)
	}
	ar.shutdown()

	// Every log line about a database names it; the PostgreSQL stream's
	// reconnect lines are among them.
	reconnects := 0
	for _, line := range strings.Split(strings.TrimSpace(ar.logs.String()), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		msg, _ := rec["msg"].(string)
		if strings.Contains(msg, "reconnecting") {
			reconnects++
			if rec["database"] != "main" {
				t.Errorf("reconnect line without its database: %s", line)
			}
		}
		if strings.Contains(line, "stream") && rec["database"] == nil && !strings.Contains(msg, "agent") && !strings.Contains(msg, "serving") {
			t.Errorf("stream log line without its database: %s", line)
		}
	}
	if reconnects == 0 {
		t.Fatalf("no reconnect logged while PostgreSQL was down:\n%s", ar.logs.String())
	}
}
