package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/agent"
)

func (a *app) agentCmd() *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "agent --config FILE",
		Short: "Run the archiving daemon: streams, schedules, retention, drills, metrics",
		Long: `Look after one or more databases as configured in a YAML file: keep each
stream running (restarted with backoff; one writer per repository, by
lock), take base backups, expire, verify and drill on cron schedules, serve
Prometheus metrics on /metrics and health on /healthz, and alert by webhook
and mail when a stream is down or lagging, a scheduled backup is missed, or
a backup, verify or drill fails.

SIGHUP reloads the config (a bad config is reported and the running one
kept); SIGTERM or SIGINT flushes the streams and exits. See README.md
("The agent") for the config file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if config == "" {
				return usageErr(fmt.Errorf("--config (or TIDEMARK_CONFIG) is required"))
			}
			err := agent.Serve(cmd.Context(), config, a.engines, a.log)
			if errors.Is(err, agent.ErrConfig) {
				return usageErr(err)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "agent config file (YAML)")
	cmd.AddCommand(a.agentInstallCmd())
	return cmd
}
