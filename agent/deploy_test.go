package agent

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/tidemark/tidemark/internal/testenv"
)

// TestDeployRules: the Prometheus alert rules load in promtool, their unit
// tests (each alert fires on the series that should raise it) pass, and
// they name only series the agent exports.
func TestDeployRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Unavailable(t, "promtool", err)
	}
	dir := filepath.Join("..", "deploy", "prometheus")
	for _, args := range [][]string{{"check", "rules", "tidemark-rules.yml"}, {"test", "rules", "tidemark-rules.test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %v: %v\n%s", args, err, out)
		}
	}
	checkNames(t, filepath.Join(dir, "tidemark-rules.yml"))
}

// TestDeployDashboard: the Grafana dashboard is JSON Grafana imports (every
// panel queries something, ids unique) and names only series the agent
// exports.
func TestDeployDashboard(t *testing.T) {
	path := filepath.Join("..", "deploy", "grafana", "tidemark.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("panel %q: a target without expr", p.Title)
			}
		}
	}
	if d.UID == "" || len(d.Panels) < 8 {
		t.Fatalf("dashboard: uid %q, %d panels", d.UID, len(d.Panels))
	}
	checkNames(t, path)
}

// checkNames fails for every tidemark_ series a file names that the
// agent does not export.
func checkNames(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	exported := NewMetrics().Names()
	found := regexp.MustCompile(`\btidemark_[a-z_]+\b`).FindAllString(string(b), -1)
	if len(found) == 0 {
		t.Fatalf("%s names no tidemark_ series", path)
	}
	for _, name := range found {
		if !slices.Contains(exported, name) {
			t.Errorf("%s names %s, which the agent does not export (it exports %v)", path, name, exported)
		}
	}
}
