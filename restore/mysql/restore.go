// Package mysql restores MySQL/MariaDB base backups into a running server:
// it plans (the newest base that reaches the target, the archived binlog
// continuous from it), loads the base (schema, rows in parallel, indexes,
// views, routines, triggers, events, users), and replays the archived
// binlog to the target. It also runs drills into a scratch MariaDB and
// verifies that every base can be rolled forward.
package mysql

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/tidemark/tidemark/archive"
	mysqlbackup "github.com/tidemark/tidemark/basebackup/mysql"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/restore"
)

// Config configures a MySQL/MariaDB restore into a running server.
type Config struct {
	Repo     *archive.Repository
	Target   string // mysql://user@host:port/ of the server to restore into
	Password string // from a password file; else the URL's
	To       binlog.Target
	Jobs     int
	// Databases restores only these (default: all in the backup).
	Databases []string
	// Force drops target databases that exist instead of refusing.
	Force bool
	// LoadMethod is how rows are sent: LoadAuto (default, also ""),
	// LoadInsert or LoadInfile.
	LoadMethod string
	// DeferIndexesAbove: tables with more row-stream bytes than this get
	// their secondary indexes built after the load (default: a quarter of
	// the target's InnoDB buffer pool).
	DeferIndexesAbove int64
	Log               *slog.Logger
	Progress          func(done, total int64)
	// ReplayProgress, when set, hears how many archived binlog events the
	// replay has passed, of the total it plans to read.
	ReplayProgress func(events, total int64)
}

// Load methods. Measured on 1.5M sysbench rows (270 MiB) with 2
// connections on 2 shared cores (bench/README.md, 2026-12-06): the target
// spends the same CPU on either (~11.5 s), but infile costs the client
// 2.5 s of CPU against 3.6 s and peaks at ~155 MiB against ~200 MiB, so
// auto takes it wherever the target allows it.
const (
	// LoadAuto loads by infile when the target's local_infile is on (the
	// MariaDB default), else by insert (MySQL 8's default is off).
	LoadAuto = "auto"
	// LoadInsert sends multi-row prepared INSERTs.
	LoadInsert = "insert"
	// LoadInfile streams rows as LOAD DATA LOCAL INFILE text (the server
	// must allow local_infile).
	LoadInfile = "infile"
)

// Result says what a restore did.
type Result struct {
	Plan       *Plan
	Tables     int
	Rows       int64
	LoadTime   time.Duration
	IndexTime  time.Duration // of LoadTime: secondary indexes built after the rows
	ReplayTime time.Duration
	Replay     *BinlogReplayResult
	LoadMethod string // how the rows went: LoadInsert or LoadInfile
}

// Restore plans, refuses before writing anything if the target is
// unreachable or the archive has a gap, then loads the base into the
// target server (tables, rows in parallel, indexes, views, routines,
// triggers, events) and replays the archived binlog to the target.
func Restore(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Jobs < 1 {
		cfg.Jobs = 4
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if len(cfg.Databases) > 0 {
		// The replay applies every database's events; with some databases
		// left out it would fail half-way, after writing.
		return nil, fmt.Errorf("--databases: a partial restore cannot be rolled forward yet (binlog replay applies every database's events); restore all databases")
	}
	plan, err := PlanRestore(ctx, cfg.Repo, cfg.To)
	if err != nil {
		return nil, err
	}
	cfg.Log.Info("restoring", "backup", plan.Backup.ID, "from", plan.From.String(), "target", cfg.To.String())
	res, err := LoadBase(ctx, cfg, plan)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if res.Replay, err = rollForward(ctx, cfg, plan); err != nil {
		at := "none of the binlog replayed"
		if rp := res.Replay; rp != nil && rp.Transactions > 0 {
			at = fmt.Sprintf("the binlog replayed through %d transactions (to %s)", rp.Transactions, rp.End)
		}
		return res, restore.Unfinished(err, fmt.Sprintf("the target holds backup %s with %s", plan.Backup.ID, at), startAgain)
	}
	res.ReplayTime = time.Since(start)
	return res, nil
}

// LoadBase restores the base backup of plan into the target server,
// without replaying the binlog.
func LoadBase(ctx context.Context, cfg Config, plan *Plan) (*Result, error) {
	if cfg.Jobs < 1 {
		cfg.Jobs = 4
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	start := time.Now()
	srv, err := targetServer(cfg)
	if err != nil {
		return nil, err
	}
	files := map[string]archive.FileEntry{}
	for _, f := range plan.Backup.Files {
		files[f.Path] = f
	}
	sf, ok := files[mysqlbackup.SchemaFile]
	if !ok {
		return nil, fmt.Errorf("backup %s: %w: no %s", plan.Backup.ID, archive.ErrCorrupt, mysqlbackup.SchemaFile)
	}
	var buf bytes.Buffer
	if err := cfg.Repo.RestoreFile(ctx, sf, &buf, cfg.Jobs); err != nil {
		return nil, err
	}
	var schema mysqlbackup.Schema
	if err := json.Unmarshal(buf.Bytes(), &schema); err != nil {
		return nil, fmt.Errorf("backup %s: %w: schema: %v", plan.Backup.ID, archive.ErrCorrupt, err)
	}
	if err := selectDatabases(&schema, cfg.Databases); err != nil {
		return nil, err
	}
	ddl, err := connectWith(ctx, srv, ddlSession)
	if err != nil {
		return nil, err
	}
	defer ddl.Close()
	// Like the rows (see loader.run), the definitions are not binlogged on
	// the target: a replica of it would otherwise get tables without rows.
	if _, err := ddl.Execute("SET SESSION sql_log_bin = 0"); err != nil {
		cfg.Log.Debug("creating definitions with binary logging on", "err", err)
	}
	if cfg.LoadMethod, err = chooseLoadMethod(ddl, cfg.LoadMethod); err != nil {
		return nil, err
	}
	cfg.Log.Debug("loading rows", "method", cfg.LoadMethod)
	existing, err := checkTarget(ddl, &schema, cfg.Force)
	if err != nil {
		return nil, err
	}
	res, err := loadChecked(ctx, cfg, plan, srv, files, &schema, ddl, existing)
	if err != nil {
		var dbs []string
		for _, db := range schema.Databases {
			dbs = append(dbs, db.Name)
		}
		return nil, restore.Unfinished(err, fmt.Sprintf("databases %s on the target hold part of backup %s",
			strings.Join(dbs, ", "), plan.Backup.ID), startAgain)
	}
	res.LoadTime = time.Since(start)
	return res, nil
}

// startAgain is how to recover from a restore stopped part way.
const startAgain = "to start again, run the same restore with --force (it drops and replaces what the restore creates)"

// loadChecked writes the base into a target that checkTarget passed.
func loadChecked(ctx context.Context, cfg Config, plan *Plan, srv binlog.Source, files map[string]archive.FileEntry,
	schema *mysqlbackup.Schema, ddl *client.Conn, existing map[string]bool) (*Result, error) {
	if err := createUsers(ddl, schema, false); err != nil {
		return nil, err
	}
	deferred, err := createTables(ddl, schema, files, cfg.DeferIndexesAbove, existing)
	if err != nil {
		return nil, err
	}
	l := &loader{cfg: cfg, srv: srv, files: files}
	if err := l.run(ctx, schema); err != nil {
		return nil, err
	}
	rowsDone := time.Now()
	if err := addKeys(ctx, cfg.Jobs, srv, deferred); err != nil {
		return nil, err
	}
	keysTime := time.Since(rowsDone)
	if err := createObjects(ddl, schema); err != nil {
		return nil, err
	}
	if err := createUsers(ddl, schema, true); err != nil {
		return nil, err
	}
	res := &Result{Plan: plan, IndexTime: keysTime, LoadMethod: cfg.LoadMethod}
	for _, db := range schema.Databases {
		res.Tables += len(db.Tables)
		for _, t := range db.Tables {
			res.Rows += t.Rows
		}
	}
	return res, nil
}

// chooseLoadMethod resolves LoadAuto by the target's local_infile.
func chooseLoadMethod(c *client.Conn, method string) (string, error) {
	switch method {
	case LoadInsert, LoadInfile:
		return method, nil
	case "", LoadAuto:
	default:
		return "", fmt.Errorf("load method %q: want %s, %s or %s", method, LoadAuto, LoadInsert, LoadInfile)
	}
	r, err := c.Execute("SELECT @@local_infile")
	if err != nil {
		return "", fmt.Errorf("read the target's local_infile: %w", err)
	}
	if on, _ := r.GetInt(0, 0); on == 1 {
		return LoadInfile, nil
	}
	return LoadInsert, nil
}

func targetServer(cfg Config) (binlog.Source, error) {
	srv, err := binlog.ParseSource(cfg.Target)
	if err != nil {
		return srv, fmt.Errorf("target: %w", err)
	}
	if cfg.Password != "" {
		srv.Password = cfg.Password
	}
	return srv, nil
}
