// Package engine is the one interface every database engine implements
// and the registry the CLI and the agent find engines in. An engine is a
// database's whole story as the commands see it: how its sources are
// named, how it streams, backs up, plans and restores, what verify checks,
// what expire trims, what status shows and how a drill proves a restore.
// The machinery behind each method lives in the engine's own packages
// (wal/binlog/oplog, basebackup/<engine>, restore/<engine>); the
// implementations of this interface are in internal/engine/<engine>.
//
// Nothing outside the registry and an engine's own packages switches on an
// engine's name: a new database is one package implementing Engine and one
// line in the registry (see docs/architecture.md).
package engine

import (
	"context"
	"log/slog"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/supervise"
	"github.com/tidemark/tidemark/restore"
)

// Engine is one database engine.
type Engine interface {
	// Info names the engine and what it answers to.
	Info() Info
	// Flags declares the engine's own flags of a command; the values reach
	// the engine again as a job's Options.
	Flags(cmd Command, d *Declarer)
	// Help is the engine's paragraph of a command's --help, "" for none.
	Help(cmd Command) string
	// Check refuses options that cannot work together before anything is
	// opened or written (a usage error); the agent calls it when it loads
	// its config, the CLI before it runs a command.
	Check(cmd Command, o Options) error

	// Stream archives the source's change stream until ctx ends. The
	// caller holds the engine's stream lock.
	Stream(ctx context.Context, job StreamJob) error
	// Backup takes a base backup. The caller holds the maintenance lock.
	Backup(ctx context.Context, job BackupJob) (*BackupReport, error)
	// Plan chooses the base and the stream range a restore would use and
	// checks that the archive reaches the target, writing nothing.
	Plan(ctx context.Context, job RestoreJob) (*Plan, error)
	// Restore plans, refuses what the archive cannot reach, then restores.
	Restore(ctx context.Context, job RestoreJob) (*RestoreReport, error)
	// Drill restores into a scratch server, checks it and measures the RTO.
	Drill(ctx context.Context, job DrillJob) (*restore.DrillReport, error)

	// Verify lists what stops this engine's bases from restoring (stream
	// continuity, coverage of each base); the objects themselves are
	// verified once for every engine by archive.
	Verify(ctx context.Context, repo *archive.Repository) ([]string, error)
	// Trim deletes this engine's stream data from before the oldest kept
	// backup (expire calls it under the maintenance lock).
	Trim(ctx context.Context, repo *archive.Repository, oldest archive.BackupSummary, dryRun bool) (archive.Trimmed, error)
	// Status describes the engine's archived streams, none when the
	// repository holds none of this engine's.
	Status(ctx context.Context, repo *archive.Repository) ([]StreamStatus, error)
}

// Info is what an engine answers to.
type Info struct {
	// Name is recorded in the repository (archive.Source.Engine, manifests,
	// gap records): never change it.
	Name string
	// Title is what people call it ("PostgreSQL").
	Title string
	// Stream is what its change stream is called ("WAL").
	Stream string
	// Schemes are the URL schemes of its sources and targets.
	Schemes []string
	// StreamLock is the repository lock a streamer holds, so two streamers
	// never write one repository.
	StreamLock string
	// Credentials says where the engine's source password comes from, for
	// messages.
	Credentials string
	// RestoreTarget is the flag naming where a restore goes: "target-dir"
	// for a data directory, "target" for a server URL.
	RestoreTarget string
}

// Command names a command whose flags and help engines contribute to.
type Command string

// The commands engines take part in.
const (
	CmdStream  Command = "stream"
	CmdBackup  Command = "backup"
	CmdRestore Command = "restore"
	CmdDrill   Command = "drill"
)

// RepoRef says how a repository was opened, for engines that hand it to a
// process of the database's (PostgreSQL's restore_command): the URL and
// the key files by path, never a key itself.
type RepoRef struct {
	URL            string
	IdentityFile   string
	PassphraseFile string
}

// Job is what every job carries.
type Job struct {
	Repo    *archive.Repository
	RepoRef RepoRef
	Log     *slog.Logger
	Options Options
	// Progress hears of long work; nil for none.
	Progress func(Step)
}

// Report passes a step to j.Progress when one is set.
func (j Job) Report(s Step) {
	if j.Progress != nil {
		j.Progress(s)
	}
}

// Step is progress of long work: Done of Total units (Total 0 when
// unknown) in one phase.
type Step struct {
	Phase string // "backup", "restore", "load", "replay", …
	Unit  string // "bytes", "documents", "entries", "transactions"
	Done  int64
	Total int64
	Bytes int64 // bytes moved so far when Unit counts something else
}

// StreamJob runs a streamer.
type StreamJob struct {
	Job
	Source        string
	FlushInterval time.Duration
	// Durable hears after each acknowledgment what is durable, for the
	// agent's RPO gauge; nil for none.
	Durable func(StreamProgress)
	// Observe hears the stream go up (streaming), down (a session failed,
	// reconnecting) and stop, for liveness: the heartbeat in the
	// repository and the agent's stream_up; nil for none.
	Observe func(supervise.State)
	// HeartbeatEvery is how often the heartbeat is written while nothing
	// changes (0: jobs.HeartbeatInterval).
	HeartbeatEvery time.Duration
	// Heartbeat hears each heartbeat written to the repository, or the
	// error writing it failed with (a full disk); nil for none.
	Heartbeat func(archive.Heartbeat, error)
}

// StreamProgress is where a stream stands after an acknowledgment: byte
// positions for streams that know the server's end (WAL), else the time
// up to which everything the server wrote is durable.
type StreamProgress struct {
	Durable    uint64
	ServerEnd  uint64
	CaughtUpAt time.Time
	// Where the stream stands, for the heartbeat a backup finds the
	// streamer by (archive.Heartbeat): the server it comes from (host:port),
	// the slot it reads, the durable position in the engine's terms and
	// its timeline; empty where the engine has none.
	Server   string
	Slot     string
	Position string
	Timeline uint32
}

// CaughtUp is the moment, as of now, up to which the archive held
// everything the server had written, if this acknowledgment says so: the
// RPO is measured from it, by the agent's gauge and by status alike.
func (p StreamProgress) CaughtUp(now time.Time) (time.Time, bool) {
	switch {
	case !p.CaughtUpAt.IsZero():
		return p.CaughtUpAt, true
	case p.Durable >= p.ServerEnd:
		return now, true
	}
	return time.Time{}, false
}

// BackupJob takes a base backup.
type BackupJob struct {
	Job
	Source string
	Type   string // full, incremental, differential
	Jobs   int
}

// BackupReport is a committed backup: the common shape, plus the
// engine's own detail for --json and a few lines for people.
type BackupReport struct {
	Manifest *archive.Manifest
	Start    string // stream position the backup is consistent from
	Stop     string
	Seconds  float64
	// Lines describe the backup for people, after the common summary.
	Lines []string
	// Detail is the engine's own part of --json.
	Detail map[string]any
}

// Target is where a restore should end: a time, everything archived, or
// one of the engine's own marks (--to-lsn, --to-gtid …) in Options.
type Target struct {
	Time   time.Time
	Latest bool
}

// RestoreJob restores (or plans a restore).
type RestoreJob struct {
	Job
	To   Target
	Jobs int
}

// Plan is what a restore would use.
type Plan struct {
	Backup archive.BackupSummary
	// From and To are the stream range replayed after the base.
	From, To string
	// Lines describe the plan for people.
	Lines  []string
	Detail map[string]any
	// Skipped names newer bases the plan passed over as unusable (a
	// corrupt manifest, missing chunks), and why: the CLI and the agent
	// show them as warnings, so damage never hides behind a success.
	Skipped []string
}

// RestoreReport is a finished restore.
type RestoreReport struct {
	Plan    Plan
	Seconds float64
	Lines   []string
	Detail  map[string]any
}

// DrillJob runs a drill; To.Time zero with Latest false means latest.
type DrillJob struct {
	Job
	To Target
	// Random asks for a random point with something to replay after the
	// oldest base: To.Time holds one between that base's end and the
	// newest archived change, which an engine may replace by a point of
	// its own stream (PostgreSQL: an LSN, always reached).
	Random  bool
	Jobs    int
	Timeout time.Duration
}
