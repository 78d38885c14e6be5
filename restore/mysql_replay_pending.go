package restore

// Stand-ins until the binlog branch's replay (restore/mysql_binlog.go) is
// merged: this file is deleted then.

import (
	"context"
	"errors"
	"fmt"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/binlog"
)

// BinlogReplayResult says what a replay applied.
type BinlogReplayResult struct{}

// CheckBinlogCoverage is binlog.CheckCoverage with the restore error classes.
func CheckBinlogCoverage(ctx context.Context, repo *archive.Repository, from binlog.Position, to binlog.Target) error {
	err := binlog.CheckCoverage(ctx, repo, from, to)
	switch {
	case errors.Is(err, binlog.ErrNotCovered):
		return fmt.Errorf("%w: %w", ErrGap, err)
	case errors.Is(err, binlog.ErrOutsideWindow):
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return err
}

func replayMySQL(ctx context.Context, cfg MySQLConfig, plan *MySQLPlan) (*BinlogReplayResult, error) {
	return nil, errNoReplay
}
