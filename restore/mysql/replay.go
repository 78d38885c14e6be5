package mysql

import (
	"context"
	"fmt"
)

// rollForward rolls the loaded base forward: the archived binlog from the
// base's snapshot position to the target, in one session.
func rollForward(ctx context.Context, cfg Config, plan *Plan) (*BinlogReplayResult, error) {
	srv, err := targetServer(cfg)
	if err != nil {
		return nil, err
	}
	c, err := srv.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	res, err := ReplayBinlog(ctx, cfg.Repo, c, plan.From, cfg.To, BinlogReplayOptions{Log: cfg.Log, Progress: func(r BinlogReplayResult) {
		if cfg.ReplayProgress != nil {
			cfg.ReplayProgress(r.EventsRead, r.EventsPlanned)
		}
	}})
	if err != nil {
		return res, fmt.Errorf("roll base %s forward from %s: %w", plan.Backup.ID, plan.From, err)
	}
	return res, nil
}
