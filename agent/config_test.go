package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/engine/all"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tidemark.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	key := writeConfig(t, "AGE-SECRET-KEY-1...")
	p := writeConfig(t, `listen: 127.0.0.1:9187
alerts:
  lag_threshold: 2m
databases:
  - name: main
    source: postgres://tidemark@db1:5432/postgres
    repo: s3://backups/main
    identity_file: `+key+`
    stream: {enabled: true, create_slot: true}
    backup: {schedule: "0 1 * * *", type: incremental, fast_checkpoint: true, fallback_full: true, from_standby: true, max_lag: 30s}
    retention: {schedule: "@daily", keep_daily: 7, pitr_window: 14d}
    verify: {schedule: "0 4 * * 0"}
    drill: {schedule: "0 5 * * 0", run_as: postgres}
`)
	c, err := LoadConfig(p, all.Registry())
	if err != nil {
		t.Fatal(err)
	}
	d := c.Databases[0]
	if !d.Stream.Enabled || d.Backup.Schedule != "0 1 * * *" || d.Retention.Policy().Window != 14*24*time.Hour ||
		time.Duration(c.Alerts.LagThreshold) != 2*time.Minute || d.Drill.RunAs != "postgres" {
		t.Fatalf("config %+v", c)
	}
	var flags []string
	for _, st := range d.settings(engine.CmdBackup) {
		flags = append(flags, st.flag+"="+st.value)
	}
	if got := strings.Join(flags, " "); !strings.Contains(got, "fallback-full=true") || !strings.Contains(got, "from-standby=true") || !strings.Contains(got, "max-lag=30s") {
		t.Fatalf("backup settings %q lack fallback-full, from-standby or max-lag", got)
	}
}

// Every mistake is reported with file, line and key, all at once.
func TestLoadConfigErrorsNameLineAndKey(t *testing.T) {
	p := writeConfig(t, `databases:
  - name: main
    source: postgres://u:secret@db1/postgres
    repo: /var/backups/main
    backup:
      schedule: "61 * * * *"
    retention:
      schedule: "@daily"
    verify: {schedule: "@weekly"}
`)
	_, err := LoadConfig(p, all.Registry())
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{
		p + ":3: databases.0.source: no passwords",
		p + ":6: databases.0.backup.schedule: schedule \"61 * * * *\"",
		p + ":7: databases.0.retention: no rule",
		p + ":2: databases.0.identity_file: verify and drills read the repository",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	// A misspelt key is refused with its line, not ignored.
	_, err = LoadConfig(writeConfig(t, "databases:\n  - name: x\n    schedul: 1\n"), all.Registry())
	if err == nil || !strings.Contains(err.Error(), "line 3: field schedul not found") {
		t.Fatalf("unknown key: %v", err)
	}
}

// TestReadmeExample: the config shown in README.md is valid, keys and all
// (the files it names are checked only for readability, so they are
// replaced by temporary ones).
func TestReadmeExample(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	body, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no yaml example")
	}
	secret := writeConfig(t, "x")
	for _, f := range []string{"/etc/tidemark/webhook", "/etc/tidemark/smtp", "/etc/tidemark/restore.key",
		"/etc/tidemark/shop-stream.pass", "/etc/tidemark/shop-backup.pass"} {
		body = strings.ReplaceAll(body, f, secret)
	}
	cfg, err := LoadConfig(writeConfig(t, body), all.Registry())
	if err != nil {
		t.Fatalf("README example: %v", err)
	}
	if len(cfg.Databases) != 2 || cfg.Databases[0].Retention.Policy().Window != 14*24*time.Hour ||
		cfg.Databases[1].backupSource() != "mysql://tidemark_backup@db2:3306/" || cfg.Databases[1].Backup.PasswordFile == "" {
		t.Fatalf("README example parsed as %+v", cfg)
	}
}

// TestBackupCredentials: a database can stream as one user and back up as
// another (MariaDB's backup needs RELOAD and SELECT, its stream does not);
// configs without them keep working, and a backup source of another engine
// or with a password is refused.
func TestBackupCredentials(t *testing.T) {
	streamPW, backupPW := writeConfig(t, "s"), writeConfig(t, "b")
	c, err := LoadConfig(writeConfig(t, `databases:
  - name: shop
    source: mysql://tidemark_stream@db2:3306/
    password_file: `+streamPW+`
    repo: /var/backups/shop
    stream: {enabled: true}
    backup: {schedule: "@daily", source: "mysql://tidemark_backup@db2:3306/", password_file: `+backupPW+`}
  - name: old
    source: mysql://backup@db3:3306/
    password_file: `+streamPW+`
    repo: /var/backups/old
    backup: {schedule: "@daily"}
`), all.Registry())
	if err != nil {
		t.Fatal(err)
	}
	shop, old := c.Databases[0], c.Databases[1]
	if shop.backupSource() != "mysql://tidemark_backup@db2:3306/" || old.backupSource() != "mysql://backup@db3:3306/" {
		t.Fatalf("backup sources %q, %q", shop.backupSource(), old.backupSource())
	}
	for _, tc := range []struct {
		db   Database
		cmd  engine.Command
		want string
	}{{shop, engine.CmdBackup, backupPW}, {shop, engine.CmdStream, streamPW}, {old, engine.CmdBackup, streamPW}} {
		_, opts, fe := tc.db.options(all.Registry(), tc.cmd)
		if fe != nil || opts.String("password-file") != tc.want {
			t.Errorf("%s %s: password file %q (%v), want %q", tc.db.Name, tc.cmd, opts.String("password-file"), fe, tc.want)
		}
	}
	_, err = LoadConfig(writeConfig(t, `databases:
  - name: shop
    source: mysql://tidemark_stream@db2:3306/
    repo: /var/backups/shop
    backup: {schedule: "@daily", source: "postgres://backup@db2/postgres"}
  - name: pg
    source: postgres://replicator@db1/postgres
    repo: /var/backups/pg
    backup: {schedule: "@daily", source: "postgres://backup:secret@db1/postgres"}
`), all.Registry())
	for _, want := range []string{"databases.0.backup.source: a MySQL/MariaDB source", "databases.1.backup.source: no passwords"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}
