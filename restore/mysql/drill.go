package mysql

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/tidemark/tidemark/archive"
	mysqlbackup "github.com/tidemark/tidemark/basebackup/mysql"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/restore"
)

// DrillConfig configures a MySQL/MariaDB drill: a throwaway MariaDB on
// a free loopback port, restored into, checked, thrown away.
type DrillConfig struct {
	Repo    *archive.Repository
	To      binlog.Target
	WorkDir string          // parent of the scratch directory (default: the temp dir)
	As      *restore.OSUser // the server's OS user when running as root (mariadbd --user)
	BinDir  string          // where mariadbd is (default /usr/sbin; mariadb-install-db from /usr/bin)
	Jobs    int
	Log     *slog.Logger
}

// drillAccount is the scratch server's only TCP account; its password is
// random per drill and never leaves this process and a 0600 init file.
const drillAccount = "tidemark_drill"

// Drill restores into a scratch server, runs CHECK TABLE on every
// table and counts its rows. An error means the drill could not run.
func Drill(ctx context.Context, cfg DrillConfig) (*restore.DrillReport, error) {
	rep := restore.NewDrillReport("mysql", cfg.To.String())
	cfg.Log = restore.OrDiscard(cfg.Log)
	scratch, err := restore.ScratchDir(cfg.WorkDir)
	if err != nil {
		return rep, fmt.Errorf("drill: scratch directory: %w", err)
	}
	defer os.RemoveAll(scratch)
	srv, stop, err := startScratchMariaDB(ctx, scratch, cfg)
	if err != nil {
		return rep, fmt.Errorf("drill: scratch MariaDB: %w", err)
	}
	defer stop()
	restoreStart := time.Now()
	res, err := Restore(ctx, Config{Repo: cfg.Repo, Target: fmt.Sprintf("mysql://%s@%s/", drillAccount, srv.Addr()),
		Password: srv.Password, To: cfg.To, Jobs: max(cfg.Jobs, 1), Log: cfg.Log})
	if res != nil && res.Plan != nil {
		rep.Backup = res.Plan.Backup.ID
	}
	if err != nil {
		return rep, fmt.Errorf("drill: %w", err)
	}
	rep.RestoreSeconds = res.LoadTime.Seconds()
	rep.RecoverySeconds = res.ReplayTime.Seconds()
	rep.ServerStartSeconds = restoreStart.Sub(rep.Started).Seconds()
	rep.RTOSeconds = time.Since(rep.Started).Seconds()
	if err := checkTables(ctx, srv, rep, cfg.Log); err != nil {
		return rep, fmt.Errorf("drill: checks: %w", err)
	}
	rep.OK = rep.Problems == 0
	return rep, nil
}

// checkTables runs CHECK TABLE and counts rows in every user table.
func checkTables(ctx context.Context, srv binlog.Source, rep *restore.DrillReport, log *slog.Logger) error {
	c, err := client.Connect(srv.Addr(), srv.User, srv.Password, "")
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := c.Execute(`SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE'
		AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1, 2`)
	if err != nil {
		return err
	}
	dbs := map[string]bool{}
	for i := range r.RowNumber() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		db, _ := r.GetString(i, 0)
		tbl, _ := r.GetString(i, 1)
		dbs[db] = true
		rep.Tables++
		name := mysqlbackup.QuoteIdent(db) + "." + mysqlbackup.QuoteIdent(tbl)
		chk, err := c.Execute("CHECK TABLE " + name + " EXTENDED")
		if err != nil {
			return fmt.Errorf("check %s: %w", name, err)
		}
		for j := range chk.RowNumber() {
			typ, _ := chk.GetString(j, 2)
			text, _ := chk.GetString(j, 3)
			if typ == "error" || (typ == "status" && text != "OK") {
				rep.Problems++
				log.Error("drill: CHECK TABLE found a problem", "table", db+"."+tbl, "type", typ, "message", text)
			}
		}
		cnt, err := c.Execute("SELECT COUNT(*) FROM " + name)
		if err != nil {
			return fmt.Errorf("count %s: %w", name, err)
		}
		n, _ := cnt.GetInt(0, 0)
		rep.Rows += n
		log.Info("drill: table", "table", db+"."+tbl, "rows", n)
	}
	rep.Databases = len(dbs)
	rep.IndexesChecked = rep.Tables // CHECK TABLE EXTENDED checks each table's indexes against its rows
	return nil
}
