package restore

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/archive"
)

// DrillConfig configures a restore drill: restore into a scratch directory,
// start a throwaway server on a free port, check it, throw it away.
type DrillConfig struct {
	Repo           *archive.Repository
	Target         PostgresTarget
	RestoreCommand string
	WorkDir        string  // parent of the scratch directory (default: the temp dir)
	As             *OSUser // PostgreSQL's OS user when running as root
	BinDir         string  // default: found from the backup's server version
	User           string  // database superuser to check as (default postgres)
	Jobs           int
	Timeout        time.Duration // for recovery (default 30 minutes)
	Log            *slog.Logger
}

// DrillReport is what a drill measured. It is stored in the repository
// unencrypted, so it holds counts and durations, never names.
type DrillReport struct {
	Job             string    `json:"job"`
	Engine          string    `json:"engine"`
	Started         time.Time `json:"started"`
	Backup          string    `json:"backup"`
	Target          string    `json:"target"`
	RestoreSeconds  float64   `json:"restore_seconds"`
	RecoverySeconds float64   `json:"recovery_seconds"`
	RTOSeconds      float64   `json:"rto_seconds"` // restore + recovery: until the server accepted writes
	Databases       int       `json:"databases"`
	Tables          int       `json:"tables"`
	Rows            int64     `json:"rows"`
	IndexesChecked  int       `json:"indexes_checked"`
	Problems        int       `json:"problems"`
	OK              bool      `json:"ok"`
}

// DrillPostgres runs one drill. Problems found by the checks are logged and
// counted; an error means the drill itself could not run (which is a
// failure too).
func DrillPostgres(ctx context.Context, cfg DrillConfig) (*DrillReport, error) {
	rep := &DrillReport{Job: "drill", Engine: "postgres", Started: time.Now().UTC(), Target: cfg.Target.String()}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Minute
	}
	if cfg.User == "" {
		cfg.User = "postgres"
	}
	cfg.Log = orDiscard(cfg.Log)
	scratch, err := os.MkdirTemp(cfg.WorkDir, "tidemark-drill-")
	if err != nil {
		return rep, fmt.Errorf("drill: %w", err)
	}
	defer os.RemoveAll(scratch)
	dir := filepath.Join(scratch, "pg")
	plan, err := RestorePostgres(ctx, PostgresConfig{Repo: cfg.Repo, TargetDir: dir, Target: cfg.Target,
		RestoreCommand: cfg.RestoreCommand, Jobs: cfg.Jobs, Log: cfg.Log})
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
	port, err := freePort()
	if err != nil {
		return rep, fmt.Errorf("drill: %w", err)
	}
	rec, err := StartRestored(ctx, dir, binDir, port, cfg.Timeout, cfg.As)
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

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
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
func checkCluster(ctx context.Context, cfg DrillConfig, dir string, port int, rep *DrillReport) error {
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

func checkDatabase(ctx context.Context, cfg DrillConfig, dir string, port int, db string, rep *DrillReport) error {
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

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
