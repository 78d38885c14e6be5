package agent

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/engine"
)

// Config is the agent's YAML file. Credentials never appear in it: the
// database password comes from ~/.pgpass / PGPASSFILE (or the engine's
// equivalent), the repository's from the AWS chain or the environment, and
// keys, webhook URLs and SMTP passwords from files named here.
type Config struct {
	Listen    string     `yaml:"listen"` // /metrics and /healthz, e.g. 127.0.0.1:9187
	Alerts    Alerts     `yaml:"alerts"`
	Databases []Database `yaml:"databases"`

	path string
}

// Alerts say where to tell people that something slipped.
type Alerts struct {
	WebhookURLFile string   `yaml:"webhook_url_file"` // file holding a Slack/Mattermost-style incoming webhook URL
	SMTP           *SMTP    `yaml:"smtp"`
	LagThreshold   Duration `yaml:"lag_threshold"` // alert when the stream's RPO exceeds this (default 5m)
	Repeat         Duration `yaml:"repeat"`        // repeat a standing alert this often (default 1h)
	// StreamDownAfter: alert a stream that has been down (reconnecting)
	// this long (default 30s).
	StreamDownAfter Duration      `yaml:"stream_down_after"`
	Timeout         time.Duration `yaml:"-"`
}

// SMTP sends alert mail.
type SMTP struct {
	Addr         string   `yaml:"addr"` // host:port
	From         string   `yaml:"from"`
	To           []string `yaml:"to"`
	Username     string   `yaml:"username"`
	PasswordFile string   `yaml:"password_file"`
}

// Database is one database the agent looks after.
type Database struct {
	Name           string `yaml:"name"`
	Source         string `yaml:"source"`
	Repo           string `yaml:"repo"`
	PasswordFile   string `yaml:"password_file"`   // MySQL, MongoDB: the source's password (PostgreSQL: ~/.pgpass)
	IdentityFile   string `yaml:"identity_file"`   // verify and drills read the repository
	PassphraseFile string `yaml:"passphrase_file"` // alternatively, for passphrase repositories

	Stream    *StreamJob    `yaml:"stream"`
	Backup    *BackupJob    `yaml:"backup"`
	Retention *RetentionJob `yaml:"retention"`
	Verify    *Scheduled    `yaml:"verify"`
	Drill     *DrillJob     `yaml:"drill"`
}

// StreamJob keeps `stream` running.
type StreamJob struct {
	Enabled       bool     `yaml:"enabled"`
	Slot          string   `yaml:"slot"`
	CreateSlot    bool     `yaml:"create_slot"`
	FlushInterval Duration `yaml:"flush_interval"`
}

// Scheduled is a job run on a cron schedule ("0 3 * * *", "@daily").
type Scheduled struct {
	Schedule string `yaml:"schedule"`
}

// BackupJob takes base backups.
type BackupJob struct {
	Scheduled      `yaml:",inline"`
	Type           string `yaml:"type"`
	FastCheckpoint bool   `yaml:"fast_checkpoint"`
	// FallbackFull: PostgreSQL 17+, a full backup when an incremental
	// cannot be taken (--fallback-full).
	FallbackFull bool `yaml:"fallback_full"`
	Jobs         int  `yaml:"jobs"`
	// FromStandby and MaxLag: PostgreSQL, back up from a standby of the
	// source (--from-standby), refusing one that replays further behind
	// than MaxLag (--max-lag).
	FromStandby bool     `yaml:"from_standby"`
	MaxLag      Duration `yaml:"max_lag"`
	// Source and PasswordFile, when set, are the credentials backups use
	// instead of the database's: an engine whose backups need privileges
	// its stream does not (MariaDB's RELOAD and SELECT) can stream and
	// back up as two users, each with only what its job needs.
	Source       string `yaml:"source"`
	PasswordFile string `yaml:"password_file"`
}

// backupSource is where backups read from: backup.source, else source.
func (d Database) backupSource() string {
	if d.Backup != nil && d.Backup.Source != "" {
		return d.Backup.Source
	}
	return d.Source
}

// RetentionJob expires what the policy no longer keeps.
type RetentionJob struct {
	Scheduled   `yaml:",inline"`
	KeepLast    int      `yaml:"keep_last"`
	KeepDaily   int      `yaml:"keep_daily"`
	KeepWeekly  int      `yaml:"keep_weekly"`
	KeepMonthly int      `yaml:"keep_monthly"`
	KeepYearly  int      `yaml:"keep_yearly"`
	PITRWindow  Duration `yaml:"pitr_window"`
}

// Policy converts the job's rules.
func (j RetentionJob) Policy() archive.Policy {
	return archive.Policy{KeepLast: j.KeepLast, KeepDaily: j.KeepDaily, KeepWeekly: j.KeepWeekly,
		KeepMonthly: j.KeepMonthly, KeepYearly: j.KeepYearly, Window: time.Duration(j.PITRWindow)}
}

// DrillJob restores into a scratch instance and checks it.
type DrillJob struct {
	Scheduled `yaml:",inline"`
	RunAs     string `yaml:"run_as"`  // PostgreSQL refuses to run as root: the user to run it as
	WorkDir   string `yaml:"workdir"` // scratch space (default: the system temp dir)
	Target    string `yaml:"target"`  // MongoDB: an empty scratch server to restore into
}

// Duration reads "90s", "5m", "14d", "2w".
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := archive.ParseDuration(n.Value)
	if err != nil {
		return &lineError{line: n.Line, msg: err.Error()}
	}
	*d = Duration(v)
	return nil
}

type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

// ErrConfig marks an invalid config file.
var ErrConfig = errors.New("invalid agent config")

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// LoadConfig reads and validates path. Errors name the file, the line and
// the key.
func LoadConfig(path string, reg *engine.Registry) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // a misspelt key is an error, not a silently ignored line
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	c.path = path
	if errs := c.validate(reg); len(errs) > 0 {
		var lines []string
		for _, e := range errs {
			lines = append(lines, fmt.Sprintf("%s:%d: %s: %s", path, lineOf(&root, e.key), e.key, e.msg))
		}
		return nil, fmt.Errorf("%w:\n  %s", ErrConfig, strings.Join(lines, "\n  "))
	}
	return &c, nil
}

type fieldError struct{ key, msg string }

// commands are the engine commands a database's jobs run.
func (d Database) commands() []engine.Command {
	cmds := []engine.Command{engine.CmdStream} // the source must name an engine even without jobs
	if d.Backup != nil {
		cmds = append(cmds, engine.CmdBackup)
	}
	if d.Drill != nil {
		cmds = append(cmds, engine.CmdDrill)
	}
	return cmds
}

func (c *Config) validate(reg *engine.Registry) []fieldError {
	var errs []fieldError
	bad := func(key, format string, args ...any) {
		errs = append(errs, fieldError{key, fmt.Sprintf(format, args...)})
	}
	if len(c.Databases) == 0 {
		bad("databases", "no database configured")
	}
	checkFile := func(key, path string) {
		if path == "" {
			return
		}
		if _, err := os.Stat(path); err != nil {
			bad(key, "%v", err)
		}
	}
	checkFile("alerts.webhook_url_file", c.Alerts.WebhookURLFile)
	if s := c.Alerts.SMTP; s != nil {
		if s.Addr == "" || s.From == "" || len(s.To) == 0 {
			bad("alerts.smtp", "addr, from and to are required")
		}
		checkFile("alerts.smtp.password_file", s.PasswordFile)
	}
	names := map[string]bool{}
	for i, d := range c.Databases {
		k := func(sub string) string { return fmt.Sprintf("databases.%d.%s", i, sub) }
		if d.Name == "" || strings.ContainsAny(d.Name, " /\"") {
			bad(k("name"), "a name without spaces, slashes or quotes is required")
		} else if names[d.Name] {
			bad(k("name"), "%q is used twice", d.Name)
		}
		names[d.Name] = true
		switch u, err := url.Parse(d.Source); {
		case err != nil:
			bad(k("source"), "a %s URL is required", reg.SchemeList())
		case u.User != nil && func() bool { _, set := u.User.Password(); return set }():
			bad(k("source"), "no passwords in the config: use ~/.pgpass or PGPASSFILE (PostgreSQL) or password_file (MySQL, MongoDB)")
		default:
			seen := map[string]bool{}
			for _, cmd := range d.commands() {
				if _, _, fe := d.options(reg, cmd); fe != nil && !seen[fe.key] {
					seen[fe.key] = true
					bad(k(fe.key), "%s", fe.msg)
				}
			}
		}
		checkFile(k("password_file"), d.PasswordFile)
		if d.Repo == "" {
			bad(k("repo"), "a repository URL is required")
		}
		checkFile(k("identity_file"), d.IdentityFile)
		checkFile(k("passphrase_file"), d.PassphraseFile)
		sched := func(key, spec string) {
			if _, err := cronParser.Parse(spec); err != nil {
				bad(key, "schedule %q: %v", spec, err)
			}
		}
		if d.Backup != nil {
			sched(k("backup.schedule"), d.Backup.Schedule)
			if src := d.Backup.Source; src != "" {
				if msg := sameEngine(reg, d.Source, src); msg != "" {
					bad(k("backup.source"), "%s", msg)
				}
			}
			checkFile(k("backup.password_file"), d.Backup.PasswordFile)
			switch d.Backup.Type {
			case "", "full", "incremental", "differential":
			default:
				bad(k("backup.type"), "want full, incremental or differential")
			}
		}
		if d.Retention != nil {
			sched(k("retention.schedule"), d.Retention.Schedule)
			if d.Retention.Policy().Empty() {
				bad(k("retention"), "no rule: set keep_last, keep_daily, keep_weekly, keep_monthly, keep_yearly or pitr_window")
			}
		}
		if d.Verify != nil {
			sched(k("verify.schedule"), d.Verify.Schedule)
		}
		if d.Drill != nil {
			sched(k("drill.schedule"), d.Drill.Schedule)
		}
		if (d.Verify != nil || d.Drill != nil) && d.IdentityFile == "" && d.PassphraseFile == "" {
			bad(k("identity_file"), "verify and drills read the repository: an identity_file or passphrase_file is required")
		}
	}
	return errs
}

// sameEngine checks a job's own source: a URL of the database's engine,
// without a password. "" when it is fine.
func sameEngine(reg *engine.Registry, source, own string) string {
	u, err := url.Parse(own)
	if err != nil {
		return err.Error()
	}
	if _, set := u.User.Password(); set {
		return "no passwords in the config: use password_file (MySQL, MongoDB) or ~/.pgpass (PostgreSQL)"
	}
	e, err := reg.ForURL(own)
	if err != nil {
		return fmt.Sprintf("a %s URL is required", reg.SchemeList())
	}
	if d, err := reg.ForURL(source); err == nil && d != e {
		return fmt.Sprintf("a %s source, like the database's", d.Info().Title)
	}
	return ""
}

// lineOf finds the line of a dotted key path ("databases.0.backup.schedule")
// in the parsed document, or of its deepest existing parent.
func lineOf(root *yaml.Node, key string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, part := range strings.Split(key, ".") {
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == part {
					line, next = n.Content[i].Line, n.Content[i+1]
				}
			}
		case yaml.SequenceNode:
			if idx, err := strconv.Atoi(part); err == nil && idx < len(n.Content) {
				next = n.Content[idx]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}
