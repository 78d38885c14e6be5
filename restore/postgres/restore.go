// Package postgres restores PostgreSQL base backups: it plans (the newest
// base that reaches the target, the archived WAL continuous from it),
// materialises the data directory chunk-parallel, writes the recovery
// configuration, and can start the result, run a drill on it, and verify
// that the archived WAL keeps every base restorable.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tidemark/tidemark/archive"
	pgbackup "github.com/tidemark/tidemark/basebackup/postgres"
	"github.com/tidemark/tidemark/restore"
)

// Config configures a PostgreSQL restore.
type Config struct {
	Repo      *archive.Repository
	TargetDir string
	Target    Target
	Timeline  string // "latest" (default), "current" or a number
	Jobs      int
	// TablespaceMap relocates tablespaces: keys are a tablespace's OID or
	// its original location, values the new location.
	TablespaceMap map[string]string
	// Fetch, when set, is how the restored server will fetch WAL: it is
	// made runnable by Owner (PlaceFetch) before anything is written, and
	// becomes the restore_command.
	Fetch *FetchCommand
	// RestoreCommand is the restore_command written into the restored
	// configuration (a `tidemark wal-fetch` invocation, no secret inlined)
	// when Fetch is not set.
	RestoreCommand string
	// Owner is the OS user the restored server runs as, when it is not
	// the current user (a restore as root): the data directory and the
	// tablespaces are handed to it. nil: the current user.
	Owner    *restore.OSUser
	Log      *slog.Logger
	Progress func(done, total int64)
	// Delta reuses an existing data directory: chunks already on disk are
	// kept, only differing ones fetched, files the backup lacks removed.
	Delta bool
	// Exclusive stops just before the target instead of just after it.
	Exclusive bool
}

// Restore plans, then materialises the data directory and writes
// the recovery configuration. Starting the server is the caller's choice.
func Restore(ctx context.Context, cfg Config) (*Plan, error) {
	if cfg.Jobs < 1 {
		cfg.Jobs = 4
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	plan, err := PlanRestore(ctx, cfg.Repo, cfg.Target)
	if err != nil {
		return nil, err
	}
	if cfg.Fetch != nil {
		f, placed, err := PlaceFetch(ctx, *cfg.Fetch, cfg.TargetDir, cfg.Owner)
		if err != nil {
			return nil, err
		}
		cfg.RestoreCommand, plan.Placed = f.String(), placed
	}
	if cfg.Delta {
		if err := checkDeltaTarget(cfg.TargetDir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(cfg.TargetDir, 0o700); err != nil {
			return nil, err
		}
		if err := removeExtra(cfg.TargetDir, plan.Backup); err != nil {
			return nil, err
		}
	} else if err := emptyDir(cfg.TargetDir); err != nil {
		return nil, err
	}
	if err := markIncomplete(cfg.TargetDir, plan.Backup.ID); err != nil {
		return nil, err
	}
	cfg.Log.Info("restoring", "backup", plan.Backup.ID, "start_lsn", plan.Meta.StartLSN, "target", cfg.Target.String(),
		"archived_wal_until", plan.WALUntil, "timeline", plan.Timeline)
	st := &deltaStats{}
	if err := materialize(ctx, cfg, plan, st); err != nil {
		return nil, failedInto(cfg.TargetDir, err)
	}
	plan.Kept, plan.Fetched = st.kept.Load(), st.fetched.Load()
	if err := writeRecoveryConfig(cfg); err != nil {
		return nil, failedInto(cfg.TargetDir, err)
	}
	if err := handOver(cfg, plan.Meta); err != nil {
		return nil, failedInto(cfg.TargetDir, fmt.Errorf("hand the restored files to %s: %w", cfg.Owner.Name, err))
	}
	if err := markComplete(cfg.TargetDir); err != nil {
		return nil, failedInto(cfg.TargetDir, err)
	}
	return plan, nil
}

// handOver gives the data directory and the tablespaces to the server's
// OS user.
func handOver(cfg Config, meta pgbackup.Meta) error {
	if cfg.Owner == nil {
		return nil
	}
	if err := cfg.Owner.Chown(cfg.TargetDir); err != nil {
		return err
	}
	for _, ts := range meta.Tablespaces {
		loc := ts.Location
		for _, k := range []string{ts.OID, ts.Location} {
			if v, ok := cfg.TablespaceMap[k]; ok {
				loc = v
			}
		}
		if err := cfg.Owner.Chown(loc); err != nil {
			return err
		}
	}
	return nil
}

// emptyDir creates dir, or accepts it when it exists and is empty.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		return err
	}
	if Incomplete(dir) {
		return refuseIncomplete(dir)
	}
	if len(entries) > 0 {
		return fmt.Errorf("%w: target directory %s is not empty (restore into a new or empty directory, or over a stopped server's with --delta)",
			archive.ErrTargetHoldsData, dir)
	}
	return os.Chmod(dir, 0o700)
}

// materialize writes every file of the backup, in parallel, each verified
// chunk by chunk as it is read.
func materialize(ctx context.Context, cfg Config, plan *Plan, st *deltaStats) error {
	m, meta := plan.Backup, plan.Meta
	var mu sync.Mutex
	tsMap, relocated, err := placeTablespaces(cfg, meta)
	if err != nil {
		return err
	}
	for _, f := range m.Files { // directories first, in manifest order
		p := filepath.Join(cfg.TargetDir, filepath.FromSlash(f.Path))
		switch {
		case fs.FileMode(f.Mode).IsDir():
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
		case f.Link != "":
			return fmt.Errorf("backup %s: unexpected symbolic link %s (tablespaces come through tablespace_map)", m.ID, f.Path)
		}
	}
	var regular []archive.FileEntry
	for _, f := range m.Files {
		if !fs.FileMode(f.Mode).IsDir() && f.Link == "" {
			regular = append(regular, f)
		}
	}
	regular, rebuilt, err := rebuildPlans(ctx, cfg, plan, regular)
	if err != nil {
		return err
	}
	var total, done int64
	for _, f := range regular {
		total += f.Size
	}
	for _, p := range rebuilt {
		total += p.entry.Size
	}
	report := func(n int64) {
		mu.Lock()
		defer mu.Unlock()
		done += n
		if cfg.Progress != nil {
			cfg.Progress(done, total)
		}
	}
	if cfg.Delta {
		err = deltaFiles(ctx, cfg, regular, st, report)
	} else {
		err = writeFiles(ctx, cfg.Repo, cfg.TargetDir, regular, cfg.Jobs, func(n int64) { st.fetched.Add(n); report(n) })
	}
	if err != nil {
		return err
	}
	if err := writeRebuilt(ctx, cfg, rebuilt, func(n int64) { st.fetched.Add(n); report(n) }); err != nil {
		return err
	}
	if relocated {
		// PostgreSQL recreates pg_tblspc links from this file at recovery
		// start: it must name the new locations.
		if err := os.WriteFile(filepath.Join(cfg.TargetDir, "tablespace_map"), tsMap, 0o600); err != nil {
			return fmt.Errorf("rewrite tablespace_map: %w", err)
		}
	}
	return nil
}

// placeTablespaces creates each tablespace's (possibly relocated) directory,
// refusing one that holds anything — on the same host that would be the
// live tablespace of the original cluster — links pg_tblspc/<oid> to it so
// the tablespace's files land there, and rewrites tablespace_map, which
// PostgreSQL uses at recovery start to recreate those links.
func placeTablespaces(cfg Config, meta pgbackup.Meta) (mapFile []byte, relocated bool, err error) {
	if len(meta.Tablespaces) == 0 {
		return nil, false, nil
	}
	used := map[string]bool{}
	var mapLines []string
	for _, ts := range meta.Tablespaces {
		loc := ts.Location
		for _, k := range []string{ts.OID, ts.Location} {
			if v, ok := cfg.TablespaceMap[k]; ok {
				loc, used[k] = v, true
			}
		}
		if !filepath.IsAbs(loc) {
			return nil, false, fmt.Errorf("tablespace %s: location %q must be absolute", ts.OID, loc)
		}
		if entries, err := os.ReadDir(loc); err == nil && len(entries) > 0 && !cfg.Delta {
			return nil, false, fmt.Errorf("%w: tablespace %s: %s is not empty (the original cluster's tablespace?); relocate it with --tablespace-map %s=NEW_DIR",
				archive.ErrTargetHoldsData, ts.OID, loc, ts.OID)
		}
		if err := os.MkdirAll(loc, 0o700); err != nil {
			return nil, false, fmt.Errorf("tablespace %s: %w", ts.OID, err)
		}
		relocated = relocated || loc != ts.Location
		link := filepath.Join(cfg.TargetDir, "pg_tblspc", ts.OID)
		if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
			return nil, false, err
		}
		if cfg.Delta {
			os.Remove(link) // a delta restore re-points an existing link
		}
		if err := os.Symlink(loc, link); err != nil {
			return nil, false, fmt.Errorf("tablespace %s: %w", ts.OID, err)
		}
		mapLines = append(mapLines, ts.OID+" "+escapeMapPath(loc))
	}
	for k := range cfg.TablespaceMap {
		if !used[k] {
			return nil, false, fmt.Errorf("--tablespace-map %s: the backup has no such tablespace", k)
		}
	}
	return []byte(strings.Join(mapLines, "\n") + "\n"), relocated, nil
}

// escapeMapPath escapes a path as PostgreSQL writes tablespace_map lines.
func escapeMapPath(p string) string {
	return strings.NewReplacer("\\", "\\\\", "\n", "\\\n", "\r", "\\\r").Replace(p)
}

// writeRecoveryConfig makes the restored directory recover to the target
// and promote. backup_label and tablespace_map stay exactly as received.
func writeRecoveryConfig(cfg Config) error {
	tl := cfg.Timeline
	if tl == "" {
		tl = "latest"
	}
	lines := []string{
		"# Written by tidemark restore",
		"restore_command = " + quoteConf(cfg.RestoreCommand),
		"recovery_target_timeline = " + quoteConf(tl),
		"recovery_target_action = 'promote'",
		// A backup taken from a standby carries its primary_conninfo: the
		// restored server must never stream from the production primary.
		"primary_conninfo = ''",
		"primary_slot_name = ''",
	}
	if cfg.Exclusive {
		lines = append(lines, "recovery_target_inclusive = off")
	}
	t := cfg.Target
	switch {
	case !t.Time.IsZero():
		lines = append(lines, "recovery_target_time = "+quoteConf(FormatTime(t.Time)))
	case t.LSN != "":
		lines = append(lines, "recovery_target_lsn = "+quoteConf(t.LSN))
	case t.XID != "":
		lines = append(lines, "recovery_target_xid = "+quoteConf(t.XID))
	case t.Name != "":
		lines = append(lines, "recovery_target_name = "+quoteConf(t.Name))
	}
	auto := filepath.Join(cfg.TargetDir, "postgresql.auto.conf")
	f, err := os.OpenFile(auto, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString("\n" + strings.Join(lines, "\n") + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// A standby's backup holds standby.signal, which would keep the restored
	// server a standby forever instead of recovering to the target.
	if err := os.Remove(filepath.Join(cfg.TargetDir, "standby.signal")); err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.WriteFile(filepath.Join(cfg.TargetDir, "recovery.signal"), nil, 0o600)
}

func quoteConf(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
