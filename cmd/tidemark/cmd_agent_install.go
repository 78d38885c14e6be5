package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	osuser "os/user"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/internal/shell"
)

// agentInstallCmd prints what runs the agent as a service; installing it
// stays the administrator's step, so nothing is written behind their back.
func (a *app) agentInstallCmd() *cobra.Command {
	var (
		config, user, envFile string
		systemd, cron         bool
	)
	cmd := &cobra.Command{
		Use:   "install (--systemd | --cron) --config FILE",
		Short: "Print a systemd unit or a crontab entry that runs the agent",
		Long: `Print a systemd unit (save it as /etc/systemd/system/tidemark-agent.service,
then 'systemctl daemon-reload && systemctl enable --now tidemark-agent') or
a crontab line (for hosts without systemd: starts the agent every minute
when it is not running; a second agent is refused by the repository lock
anyway).

The unit runs the agent as a dedicated user (--user, default tidemark),
never as root; create it first:

  useradd --system --home-dir /var/lib/tidemark --create-home \
      --shell /usr/sbin/nologin tidemark

It must be able to read the config, the key and password files it names
(e.g. root:tidemark, mode 0640) and write a local repository; its home,
/var/lib/tidemark (the unit's StateDirectory), is a good place for a
local repository and for a PostgreSQL .pgpass. Drills then start their
scratch servers as this user.

Secrets stay out of the unit: point --env-file at a file readable only by
root and that user holding TIDEMARK_SOURCE or AWS_* variables, and keep
key files where the config names them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if systemd == cron {
				return usageErr(fmt.Errorf("give exactly one of --systemd or --cron"))
			}
			if config == "" {
				return usageErr(fmt.Errorf("--config is required"))
			}
			cfgPath, err := filepath.Abs(config)
			if err != nil {
				return usageErr(err)
			}
			if _, err := os.Stat(cfgPath); err != nil {
				return usageErr(fmt.Errorf("--config: %w", err))
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("locate the tidemark binary: %w", err)
			}
			if exe, err = filepath.EvalSymlinks(exe); err != nil {
				return fmt.Errorf("locate the tidemark binary: %w", err)
			}
			if systemd {
				if user == "" {
					return usageErr(fmt.Errorf("--user: the agent needs a user to run as (default tidemark)"))
				}
				if _, err := osuser.Lookup(user); err != nil && user != "root" {
					fmt.Fprintf(a.stderr, "note: user %s does not exist on this host; create it with\n  useradd --system --home-dir /var/lib/tidemark --create-home --shell /usr/sbin/nologin %s\n", user, user)
				}
				fmt.Fprint(a.stdout, systemdUnit(exe, cfgPath, user, envFile))
				return nil
			}
			fmt.Fprint(a.stdout, cronEntry(exe, cfgPath, envFile))
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&systemd, "systemd", false, "print a systemd service unit")
	f.BoolVar(&cron, "cron", false, "print a crontab entry")
	f.StringVar(&config, "config", "", "the agent's config file")
	f.StringVar(&user, "user", "tidemark", "systemd: the dedicated user the agent runs as")
	f.StringVar(&envFile, "env-file", "", "file of environment variables (secrets) for the agent")
	return cmd
}

func systemdUnit(exe, config, user, envFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Runs the agent as %[4]s, never as root. Create the user first:
#   useradd --system --home-dir /var/lib/tidemark --create-home --shell /usr/sbin/nologin %[4]s
# and let it read %[2]s and the key and password files it names.
[Unit]
Description=Tidemark archiving agent (%[2]s)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart=%[1]s agent --config %[3]s
ExecReload=/bin/kill -HUP $MAINPID
# SIGTERM flushes the streams before exit.
KillSignal=SIGTERM
TimeoutStopSec=60
Restart=always
RestartSec=5
User=%[4]s
Group=%[4]s
# /var/lib/tidemark, owned by the user: local repositories, drill scratch space.
StateDirectory=tidemark
WorkingDirectory=/var/lib/tidemark
`, systemdQuote(exe), config, systemdQuote(config), user)
	if envFile != "" {
		fmt.Fprintf(&b, "EnvironmentFile=%s\n", envFile)
	}
	b.WriteString(`NoNewPrivileges=true
PrivateTmp=true
ProtectSystem=full

[Install]
WantedBy=multi-user.target
`)
	return b.String()
}

func cronEntry(exe, config, envFile string) string {
	run := fmt.Sprintf("%s agent --config %s", shell.Quote(exe), shell.Quote(config))
	if envFile != "" {
		run = fmt.Sprintf("set -a; . %s; set +a; %s", shell.Quote(envFile), run)
	}
	log := "/var/log/tidemark-agent.log"
	return fmt.Sprintf("# Tidemark agent: started within a minute of boot, restarted within a minute if it stopped.\n"+
		"* * * * * pgrep -f %s >/dev/null || (%s >>%s 2>&1 &)\n",
		// "[a]gent" matches the agent but not the shell running this line.
		cronEscape(shell.Quote("[a]gent --config "+config)), cronEscape(run), log)
}

// systemdQuote quotes a path for ExecStart when it holds spaces.
func systemdQuote(s string) string {
	if !strings.ContainsAny(s, " \t\"\\") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// cronEscape: cron turns an unescaped % into a newline.
func cronEscape(s string) string { return strings.ReplaceAll(s, "%", `\%`) }
