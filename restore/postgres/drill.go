package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/restore"
)

// DrillConfig configures a restore drill: restore into a scratch directory,
// start a throwaway server on a free port, check it, throw it away.
type DrillConfig struct {
	Repo    *archive.Repository
	Target  Target
	Fetch   FetchCommand
	WorkDir string          // parent of the scratch directory (default: the temp dir)
	As      *restore.OSUser // PostgreSQL's OS user when running as root
	BinDir  string          // default: found from the backup's server version
	User    string          // database superuser to check as (default postgres)
	Jobs    int
	Timeout time.Duration // for recovery (default 30 minutes)
	Log     *slog.Logger
}

// Drill runs one drill. Problems found by the checks are logged and
// counted; an error means the drill itself could not run (which is a
// failure too).
func Drill(ctx context.Context, cfg DrillConfig) (*restore.DrillReport, error) {
	rep := restore.NewDrillReport("postgres", cfg.Target.String())
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Minute
	}
	if cfg.User == "" {
		cfg.User = "postgres"
	}
	cfg.Log = restore.OrDiscard(cfg.Log)
	scratch, err := restore.ScratchDir(cfg.WorkDir)
	if err != nil {
		return rep, fmt.Errorf("drill: %w", err)
	}
	defer os.RemoveAll(scratch)
	// The scratch server's OS user must reach restore_command's executable
	// and key files, placed beside the data directory when it cannot run
	// the originals.
	if err := cfg.As.Chown(scratch); err != nil {
		return rep, fmt.Errorf("drill: hand the scratch directory to %s: %w", cfg.As.Name, err)
	}
	dir := filepath.Join(scratch, "pg")
	plan, err := Restore(ctx, Config{Repo: cfg.Repo, TargetDir: dir, Target: cfg.Target,
		Fetch: &cfg.Fetch, Owner: cfg.As, Jobs: cfg.Jobs, Log: cfg.Log})
	if err != nil {
		return rep, fmt.Errorf("drill: %w", err)
	}
	rep.Backup = plan.Backup.ID
	rep.RestoreSeconds = time.Since(rep.Started).Seconds()
	// The scratch server trusts local connections on its own socket, in a
	// directory only its OS user can enter; it accepts no TCP connection.
	if err := os.WriteFile(filepath.Join(dir, "pg_hba.conf"), []byte("local all all trust\n"), 0o600); err != nil {
		return rep, fmt.Errorf("drill: %w", err)
	}
	if err := os.Chmod(scratch, 0o700); err != nil {
		return rep, fmt.Errorf("drill: %w", err)
	}
	if err := cfg.As.Chown(scratch); err != nil {
		return rep, fmt.Errorf("drill: hand the scratch directory to %s: %w", cfg.As.Name, err)
	}
	binDir := cfg.BinDir
	if binDir == "" {
		if binDir, err = BinDir(plan.Meta.ServerVersion); err != nil {
			return rep, err
		}
	}
	port, err := restore.FreePort()
	if err != nil {
		return rep, fmt.Errorf("drill: %w", err)
	}
	rec, err := StartRestored(ctx, dir, binDir, port, cfg.Timeout, cfg.As, nil)
	defer StopRestored(context.WithoutCancel(ctx), dir, binDir, cfg.As)
	if err != nil {
		return rep, fmt.Errorf("drill: %w", err)
	}
	rep.RecoverySeconds = rec.Took.Seconds()
	rep.RTOSeconds = time.Since(rep.Started).Seconds()
	if err := checkCluster(ctx, cfg, dir, port, rep); err != nil {
		return rep, fmt.Errorf("drill: checks: %w", err)
	}
	rep.OK = rep.Problems == 0
	return rep, nil
}

func drillConn(ctx context.Context, cfg DrillConfig, dir string, port int, db string) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cc.Host, cc.Port, cc.User, cc.Database = dir, uint16(port), cfg.User, db
	return pgx.ConnectConfig(ctx, cc)
}

// checkCluster verifies every B-tree index with amcheck and counts every
// table's rows in every database that accepts connections.
func checkCluster(ctx context.Context, cfg DrillConfig, dir string, port int, rep *restore.DrillReport) error {
	c, err := drillConn(ctx, cfg, dir, port, "postgres")
	if err != nil {
		return err
	}
	rows, err := c.Query(ctx, "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname")
	dbs, err := collect(rows, err)
	c.Close(ctx)
	if err != nil {
		return fmt.Errorf("list databases: %w", err)
	}
	for _, db := range dbs {
		if err := checkDatabase(ctx, cfg, dir, port, db, rep); err != nil {
			return fmt.Errorf("database %s: %w", db, err)
		}
		rep.Databases++
	}
	return nil
}

func checkDatabase(ctx context.Context, cfg DrillConfig, dir string, port int, db string, rep *restore.DrillReport) error {
	c, err := drillConn(ctx, cfg, dir, port, db)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS amcheck"); err != nil {
		return fmt.Errorf("amcheck: %w", err)
	}
	rows, err := c.Query(ctx, `SELECT format('%I.%I', n.nspname, i.relname) FROM pg_index x
		JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace JOIN pg_am a ON a.oid = i.relam
		WHERE a.amname = 'btree' AND x.indisvalid AND x.indisready AND i.relpersistence <> 't' ORDER BY 1`)
	indexes, err := collect(rows, err)
	if err != nil {
		return fmt.Errorf("list indexes: %w", err)
	}
	for _, idx := range indexes {
		if _, err := c.Exec(ctx, "SELECT bt_index_check($1::regclass, true)", idx); err != nil {
			rep.Problems++
			cfg.Log.Error("drill: index check failed", "database", db, "index", idx, "err", err)
			continue
		}
		rep.IndexesChecked++
	}
	rows, err = c.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1`)
	tables, err := collect(rows, err)
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	for _, tbl := range tables {
		var n int64
		if err := c.QueryRow(ctx, "SELECT count(*) FROM "+tbl).Scan(&n); err != nil {
			rep.Problems++
			cfg.Log.Error("drill: table unreadable", "database", db, "table", tbl, "err", err)
			continue
		}
		cfg.Log.Info("drill: table", "database", db, "table", tbl, "rows", n)
		rep.Tables++
		rep.Rows += n
	}
	return nil
}

func collect(rows pgx.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
