package restore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/tidemark/tidemark/archive"
	pgbackup "github.com/tidemark/tidemark/basebackup/postgres"
	"github.com/tidemark/tidemark/wal"
)

// PostgresTarget is where recovery stops. Exactly one field is set.
type PostgresTarget struct {
	Latest bool
	Time   time.Time
	LSN    string
	XID    string
	Name   string
}

func (t PostgresTarget) String() string {
	switch {
	case t.Latest:
		return "latest"
	case !t.Time.IsZero():
		return "time " + FormatPostgres(t.Time)
	case t.LSN != "":
		return "lsn " + t.LSN
	case t.XID != "":
		return "xid " + t.XID
	default:
		return "restore point " + t.Name
	}
}

// PostgresConfig configures a PostgreSQL restore.
type PostgresConfig struct {
	Repo      *archive.Repository
	TargetDir string
	Target    PostgresTarget
	Timeline  string // "latest" (default), "current" or a number
	Jobs      int
	// TablespaceMap relocates tablespaces: keys are a tablespace's OID or
	// its original location, values the new location.
	TablespaceMap map[string]string
	// RestoreCommand is the restore_command written into the restored
	// configuration (a `tidemark wal-fetch` invocation, no secret inlined).
	RestoreCommand string
	Log            *slog.Logger
	Progress       func(done, total int64)
	// Delta reuses an existing data directory: chunks already on disk are
	// kept, only differing ones fetched, files the backup lacks removed.
	Delta bool
	// Exclusive stops just before the target instead of just after it.
	Exclusive bool
}

// Plan is what a restore will do, decided before anything is written.
type Plan struct {
	Backup   *archive.Manifest
	Meta     pgbackup.Meta
	WALFrom  pglogrepl.LSN
	WALUntil pglogrepl.LSN // newest archived WAL on the newest timeline
	Timeline uint32
	// Kept and Fetched count file bytes a delta restore kept and fetched.
	Kept, Fetched int64
}

// PlanPostgres picks the newest base backup that can reach the target and
// checks that the archived WAL is continuous from it onwards; it writes
// nothing. Errors wrap ErrUnreachable or ErrGap with the window or range.
func PlanPostgres(ctx context.Context, repo *archive.Repository, target PostgresTarget) (*Plan, error) {
	g, err := wal.RepoGeometry(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("repository has no PostgreSQL history: %w", err)
	}
	state, err := wal.LoadState(ctx, repo.Store(), g)
	if err != nil {
		return nil, err
	}
	ids, err := repo.ListManifests(ctx)
	if err != nil {
		return nil, err
	}
	var bases []*Plan
	for _, id := range ids {
		m, err := repo.ReadManifest(ctx, id)
		if err != nil {
			return nil, err
		}
		if m.Engine != "postgres" {
			continue
		}
		var meta pgbackup.Meta
		if err := json.Unmarshal(m.EngineMeta, &meta); err != nil {
			return nil, fmt.Errorf("backup %s: %w: engine metadata: %v", id, archive.ErrCorrupt, err)
		}
		start, _ := pglogrepl.ParseLSN(meta.StartLSN)
		bases = append(bases, &Plan{Backup: m, Meta: meta, WALFrom: start})
	}
	latest := state.Latest()
	if len(bases) == 0 || latest == nil {
		return nil, fmt.Errorf("%w: the repository holds %d base backups and %s", ErrUnreachable, len(bases), walSummary(state))
	}
	window := fmt.Sprintf("recoverable window: from the end of backup %s (%s) to %s on timeline %d",
		bases[0].Backup.ID, bases[0].Meta.StopLSN, latest.End, latest.TLI)
	var chosen *Plan
	for i := len(bases) - 1; i >= 0 && chosen == nil; i-- {
		b := bases[i]
		stop, _ := pglogrepl.ParseLSN(b.Meta.StopLSN)
		switch {
		case !target.Time.IsZero():
			if !b.Backup.Finished.After(target.Time) {
				chosen = b
			}
		case target.LSN != "":
			lsn, err := pglogrepl.ParseLSN(target.LSN)
			if err != nil {
				return nil, fmt.Errorf("target LSN %q: %w", target.LSN, err)
			}
			if stop <= lsn {
				chosen = b
			}
			if i == len(bases)-1 && lsn > latest.End {
				return nil, fmt.Errorf("%w: LSN %s is past the newest archived WAL; %s", ErrUnreachable, lsn, window)
			}
		default:
			chosen = b // latest, xid, name: the newest base; PostgreSQL checks the rest
		}
	}
	if chosen == nil {
		return nil, fmt.Errorf("%w: %s is before the first restorable point; %s", ErrUnreachable, target, window)
	}
	if !target.Time.IsZero() && target.Time.After(time.Now()) {
		return nil, fmt.Errorf("%w: %s is in the future; %s", ErrUnreachable, target, window)
	}
	chosen.WALUntil, chosen.Timeline = latest.End, latest.TLI
	if err := checkContinuity(state, g, chosen); err != nil {
		return nil, err
	}
	return chosen, nil
}

func walSummary(st *wal.State) string {
	tl := st.Latest()
	if tl == nil {
		return "no archived WAL"
	}
	return fmt.Sprintf("WAL to %s on timeline %d", tl.End, tl.TLI)
}

// checkContinuity fails with ErrGap naming the first hole in the WAL from
// the base's start onwards, on its timeline and every later one.
func checkContinuity(st *wal.State, g wal.Geometry, p *Plan) error {
	var base *wal.Timeline
	for _, tl := range st.Timelines {
		if tl.TLI == p.Meta.StartTimeline {
			base = tl
		}
	}
	if base == nil || base.Start > g.SegStart(g.SegNo(p.WALFrom)) || base.End < mustLSN(p.Meta.StopLSN) {
		return fmt.Errorf("%w: the WAL of backup %s (%s–%s on timeline %d) is not in the archive", ErrGap,
			p.Backup.ID, p.Meta.StartLSN, p.Meta.StopLSN, p.Meta.StartTimeline)
	}
	for _, tl := range st.Timelines {
		if tl.TLI < p.Meta.StartTimeline {
			continue
		}
		for _, gap := range tl.Gaps {
			if tl.TLI > p.Meta.StartTimeline || gap.To > p.WALFrom {
				return fmt.Errorf("%w: WAL missing on %s (needed from backup %s at %s onwards)", ErrGap, gap, p.Backup.ID, p.Meta.StartLSN)
			}
		}
	}
	return nil
}

func mustLSN(s string) pglogrepl.LSN {
	l, _ := pglogrepl.ParseLSN(s)
	return l
}

// RestorePostgres plans, then materialises the data directory and writes
// the recovery configuration. Starting the server is the caller's choice.
func RestorePostgres(ctx context.Context, cfg PostgresConfig) (*Plan, error) {
	if cfg.Jobs < 1 {
		cfg.Jobs = 4
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	plan, err := PlanPostgres(ctx, cfg.Repo, cfg.Target)
	if err != nil {
		return nil, err
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
	cfg.Log.Info("restoring", "backup", plan.Backup.ID, "start_lsn", plan.Meta.StartLSN, "target", cfg.Target.String(),
		"archived_wal_until", plan.WALUntil, "timeline", plan.Timeline)
	st := &deltaStats{}
	if err := materialize(ctx, cfg, plan.Backup, plan.Meta, st); err != nil {
		return nil, err
	}
	plan.Kept, plan.Fetched = st.kept.Load(), st.fetched.Load()
	if err := writeRecoveryConfig(cfg); err != nil {
		return nil, err
	}
	return plan, nil
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
	if len(entries) > 0 {
		return fmt.Errorf("target directory %s is not empty", dir)
	}
	return os.Chmod(dir, 0o700)
}

// materialize writes every file of the backup, in parallel, each verified
// chunk by chunk as it is read.
func materialize(ctx context.Context, cfg PostgresConfig, m *archive.Manifest, meta pgbackup.Meta, st *deltaStats) error {
	var total, done int64
	for _, f := range m.Files {
		total += f.Size
	}
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
func placeTablespaces(cfg PostgresConfig, meta pgbackup.Meta) (mapFile []byte, relocated bool, err error) {
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
			return nil, false, fmt.Errorf("tablespace %s: %s is not empty (the original cluster's tablespace?); relocate it with --tablespace-map %s=NEW_DIR", ts.OID, loc, ts.OID)
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
func writeRecoveryConfig(cfg PostgresConfig) error {
	tl := cfg.Timeline
	if tl == "" {
		tl = "latest"
	}
	lines := []string{
		"# Written by tidemark restore",
		"restore_command = " + quoteConf(cfg.RestoreCommand),
		"recovery_target_timeline = " + quoteConf(tl),
		"recovery_target_action = 'promote'",
	}
	if cfg.Exclusive {
		lines = append(lines, "recovery_target_inclusive = off")
	}
	t := cfg.Target
	switch {
	case !t.Time.IsZero():
		lines = append(lines, "recovery_target_time = "+quoteConf(FormatPostgres(t.Time)))
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
	return os.WriteFile(filepath.Join(cfg.TargetDir, "recovery.signal"), nil, 0o600)
}

func quoteConf(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// VerifyPostgresWAL lists what breaks restorability in a PostgreSQL
// repository: base backups whose own WAL range is not archived, and holes
// in the archived WAL after the oldest base backup's start (the WAL before
// it is never needed).
func VerifyPostgresWAL(ctx context.Context, repo *archive.Repository) ([]string, error) {
	src, err := repo.Source(ctx)
	if errors.Is(err, archive.ErrNotExist) {
		return nil, nil
	}
	if err != nil || src.Engine != "postgres" {
		return nil, err
	}
	g, err := wal.RepoGeometry(ctx, repo)
	if err != nil {
		return nil, err
	}
	state, err := wal.LoadState(ctx, repo.Store(), g)
	if err != nil {
		return nil, err
	}
	ids, err := repo.ListManifests(ctx)
	if err != nil {
		return nil, err
	}
	var problems []string
	oldest := pglogrepl.LSN(0)
	for _, id := range ids {
		m, err := repo.ReadManifest(ctx, id)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		var meta pgbackup.Meta
		if m.Engine != "postgres" || json.Unmarshal(m.EngineMeta, &meta) != nil {
			continue
		}
		from, to := mustLSN(meta.StartLSN), mustLSN(meta.StopLSN)
		if !rangeArchived(state, g, meta.StartTimeline, from, to) {
			problems = append(problems, fmt.Sprintf("backup %s: its WAL %s–%s on timeline %d is not all archived: it cannot be restored",
				id, meta.StartLSN, meta.StopLSN, meta.StartTimeline))
		}
		if oldest == 0 || from < oldest {
			oldest = from
		}
	}
	for _, tl := range state.Timelines {
		for _, gap := range tl.Gaps {
			if gap.To > oldest {
				problems = append(problems, "WAL missing on "+gap.String())
			}
		}
	}
	return problems, nil
}

// rangeArchived reports whether [from, to) on tli is archived without holes.
func rangeArchived(st *wal.State, g wal.Geometry, tli uint32, from, to pglogrepl.LSN) bool {
	for _, tl := range st.Timelines {
		if tl.TLI != tli {
			continue
		}
		if tl.Start > g.SegStart(g.SegNo(from)) || tl.End < to {
			return false
		}
		for _, gap := range tl.Gaps {
			if gap.From < to && gap.To > from {
				return false
			}
		}
		return true
	}
	return false
}
