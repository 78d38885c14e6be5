package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/jobs"
	"github.com/tidemark/tidemark/internal/supervise"
)

// Runner does the agent's work, with the same code paths as the commands
// (cmd/tidemark implements it). The agent decides when; the runner how.
type Runner interface {
	Stream(ctx context.Context, db Database, hooks StreamHooks) error
	Backup(ctx context.Context, db Database) (BackupResult, error)
	Expire(ctx context.Context, db Database) error
	Verify(ctx context.Context, db Database) error
	Drill(ctx context.Context, db Database) (DrillResult, error)
	// Repository summarizes the repository for metrics and schedules.
	Repository(ctx context.Context, db Database) (RepoSummary, error)
	// Status is the repository's status, as `status --json` shows it, for
	// the page at /.
	Status(ctx context.Context, db Database) (*jobs.StatusReport, error)
}

// StreamProgress is a stream's position after an acknowledgment: byte
// positions for streams that know the server's end (WAL), else the time
// up to which everything the server wrote is durable.
type StreamProgress = engine.StreamProgress

// StreamHooks are what the agent hears of a running stream.
type StreamHooks struct {
	Progress  func(StreamProgress)           // after each acknowledgment
	Observe   func(supervise.State)          // up, down (reconnecting), stopped
	Heartbeat func(archive.Heartbeat, error) // each heartbeat written, or why not
}

// BackupResult is what a scheduled backup reports.
type BackupResult struct {
	ID        string
	Logical   int64
	NewStored int64
}

// DrillResult is what a drill measured.
type DrillResult struct {
	RTO      time.Duration
	Problems int
}

// RepoSummary feeds the repository gauges and missed-schedule detection.
type RepoSummary struct {
	NewestBackup time.Time // zero when there is none
	Logical      int64     // sum of the backups' logical sizes
	Stored       int64     // bytes the repository holds
	// BackupStored is what the backups' chunks occupy (packs and, in
	// format 1, chunk objects): the stream, manifests and bookkeeping
	// are not counted.
	BackupStored int64
	// CompressionRatio is what the newest backup's new chunks achieved (0:
	// unknown).
	CompressionRatio float64
}

// Agent supervises every configured database until its context ends.
type Agent struct {
	Runner  Runner
	Log     *slog.Logger
	Metrics *Metrics
	Alerts  *Alerter
	// Board is the page at /, fed with the RPO; nil for none.
	Board *Board
	Now   func() time.Time
	// MissedGrace is how late a scheduled backup may finish before it counts
	// as missed (default 1 hour).
	MissedGrace time.Duration
	// Tick is how often schedules and RPO are checked (default 15s).
	Tick time.Duration
	// StreamDownGrace is how long a stream may be down (reconnecting)
	// before it is alerted (default 30s: a database restart passes
	// unalerted, a dead one does not wait for the RPO threshold).
	StreamDownGrace time.Duration
}

// Run runs cfg until ctx ends, then waits for streams to flush and jobs to
// stop.
func (a *Agent) Run(ctx context.Context, cfg *Config) error {
	if a.Now == nil {
		a.Now = time.Now
	}
	if a.MissedGrace <= 0 {
		a.MissedGrace = time.Hour
	}
	if a.Tick <= 0 {
		a.Tick = 15 * time.Second
	}
	if a.StreamDownGrace <= 0 {
		a.StreamDownGrace = 30 * time.Second
	}
	a.Board.configure(cfg)
	var wg sync.WaitGroup
	for _, db := range cfg.Databases {
		d := &dbRun{agent: a, db: db, cfg: cfg, started: a.Now(), kick: make(chan struct{}, 1)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// dbRun is the agent's work for one database.
type dbRun struct {
	agent   *Agent
	db      Database
	cfg     *Config
	started time.Time

	kick chan struct{} // a backup succeeded: a stream stopped for good may try again

	mu           sync.Mutex
	streamUp     bool
	downSince    time.Time // when the stream last went down; zero while up
	downErr      error     // why
	stopped      bool      // ended on an error retrying cannot fix: alerted as such, not as down
	caughtUp     time.Time // last moment the archive held all the server's WAL
	lastBackupOK time.Time
}

func (d *dbRun) run(ctx context.Context) {
	log := d.agent.Log.With("database", d.db.Name)
	if sum, err := d.agent.Runner.Repository(ctx, d.db); err != nil {
		log.Error("cannot read the repository", "err", err)
		d.agent.Alerts.Raise(ctx, d.db.Name, "repository", fmt.Sprintf("cannot read repository %s: %v", d.db.Repo, err))
	} else {
		d.lastBackupOK = sum.NewestBackup
		d.agent.Metrics.repository(d.db.Name, sum)
	}
	var wg sync.WaitGroup
	if d.db.Stream != nil && d.db.Stream.Enabled {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.superviseStream(ctx, log)
		}()
	}
	c := cron.New(cron.WithParser(cronParser), cron.WithChain(cron.SkipIfStillRunning(cron.DiscardLogger)))
	add := func(s *Scheduled, job string, fn func(context.Context) error) {
		if s == nil {
			return
		}
		c.AddFunc(s.Schedule, func() { d.runJob(ctx, log, job, fn) })
	}
	if b := d.db.Backup; b != nil {
		add(&b.Scheduled, "backup", d.backup)
	}
	if r := d.db.Retention; r != nil {
		add(&r.Scheduled, "expire", func(ctx context.Context) error { return d.agent.Runner.Expire(ctx, d.db) })
	}
	add(d.db.Verify, "verify", func(ctx context.Context) error { return d.agent.Runner.Verify(ctx, d.db) })
	if dr := d.db.Drill; dr != nil {
		add(&dr.Scheduled, "drill", d.drill)
	}
	c.Start()
	t := time.NewTicker(d.agent.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			<-c.Stop().Done() // running jobs see ctx cancelled and stop
			wg.Wait()
			return
		case <-t.C:
			d.watch(ctx)
		}
	}
}

// superviseStream keeps the stream running, restarting it with backoff
// when it ends on an error retrying can fix. One it cannot fix (a gap, a
// misconfigured source, a lost lease: supervise.Permanent) is alerted with
// its fix and not retried until a base backup succeeds (the remedy for a
// gap) or the config is reloaded (SIGHUP restarts everything).
func (d *dbRun) superviseStream(ctx context.Context, log *slog.Logger) {
	backoff := time.Second
	hooks := StreamHooks{Progress: d.progress, Observe: d.observe, Heartbeat: d.heartbeat}
	for ctx.Err() == nil {
		started := d.agent.Now()
		d.setStream(false, nil)
		err := d.agent.Runner.Stream(ctx, d.db, hooks)
		d.setStream(false, err)
		if ctx.Err() != nil {
			return
		}
		d.agent.Metrics.streamRestarts.WithLabelValues(d.db.Name).Inc()
		if err == nil {
			err = errors.New("stream ended without an error")
		}
		if supervise.Permanent(err) {
			d.mu.Lock()
			d.stopped = true
			d.mu.Unlock()
			log.Error("stream stopped on an error retrying cannot fix; it is not restarted until a base backup succeeds or the config is reloaded (SIGHUP)", "err", err)
			d.agent.Alerts.Raise(ctx, d.db.Name, "stream", fmt.Sprintf("stream stopped, not restarted: %v", err))
			select {
			case <-ctx.Done():
				return
			case <-d.kick:
				d.mu.Lock()
				d.stopped = false
				d.mu.Unlock()
				log.Info("a base backup succeeded: restarting the stream")
				backoff = time.Second
				continue
			}
		}
		log.Error("stream stopped; restarting", "err", err, "retry_in", backoff)
		d.agent.Alerts.Raise(ctx, d.db.Name, "stream", fmt.Sprintf("stream down: %v", err))
		if d.agent.Now().Sub(started) > 5*time.Minute {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Minute)
	}
}

// setStream records whether the stream is up (a session streams) and, when
// it is down, since when and why.
func (d *dbRun) setStream(up bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.streamUp = up
	switch {
	case up:
		d.downSince, d.downErr = time.Time{}, nil
	case d.downSince.IsZero():
		d.downSince, d.downErr = d.agent.Now(), err
	case err != nil:
		d.downErr = err
	}
	v := 0.0
	if up {
		v = 1
	}
	d.agent.Metrics.streamUp.WithLabelValues(d.db.Name).Set(v)
}

// observe follows the stream's sessions: up only while one streams, so a
// source refusing connections shows as down at once (and is alerted once
// it stays down for StreamDownGrace), however long the streamer runs.
func (d *dbRun) observe(s supervise.State) {
	d.setStream(s.Up, s.Err)
	if s.Up {
		d.agent.Metrics.streamConnected.WithLabelValues(d.db.Name).Set(float64(d.agent.Now().Unix()))
		d.agent.Alerts.Resolve(context.Background(), d.db.Name, "stream")
	}
}

// heartbeat follows the streamer's heartbeat writes: a repository the
// streamer cannot write to (a full disk) shows in the metrics and alerts.
func (d *dbRun) heartbeat(h archive.Heartbeat, err error) {
	if err != nil {
		d.agent.Metrics.heartbeatFailures.WithLabelValues(d.db.Name).Inc()
		d.agent.Alerts.Raise(context.Background(), d.db.Name, "heartbeat", fmt.Sprintf("the streamer cannot write its heartbeat to the repository: %v", err))
		return
	}
	d.agent.Metrics.heartbeat.WithLabelValues(d.db.Name).Set(float64(h.Updated.Unix()))
	d.agent.Alerts.Resolve(context.Background(), d.db.Name, "heartbeat")
}

func (d *dbRun) progress(p StreamProgress) {
	now := d.agent.Now()
	d.mu.Lock()
	if at, ok := p.CaughtUp(now); ok && at.After(d.caughtUp) {
		d.caughtUp = at
	}
	d.mu.Unlock()
	if p.CaughtUpAt.IsZero() {
		d.agent.Metrics.lagBytes.WithLabelValues(d.db.Name).Set(float64(p.ServerEnd - min(p.Durable, p.ServerEnd)))
	}
	d.agent.Alerts.Resolve(context.Background(), d.db.Name, "stream")
}

// watch computes the RPO and detects missed backups from the schedule.
func (d *dbRun) watch(ctx context.Context) {
	now := d.agent.Now()
	d.mu.Lock()
	caughtUp, up, lastOK, downSince, downErr, stopped := d.caughtUp, d.streamUp, d.lastBackupOK, d.downSince, d.downErr, d.stopped
	d.mu.Unlock()
	if d.db.Stream != nil && d.db.Stream.Enabled && !up && !stopped && !downSince.IsZero() && now.Sub(downSince) >= d.agent.StreamDownGrace {
		why := "not connected"
		if downErr != nil {
			why = downErr.Error()
		}
		d.agent.Alerts.Raise(ctx, d.db.Name, "stream", fmt.Sprintf("stream down since %s: %s", downSince.UTC().Format(time.RFC3339), why))
	}
	if d.db.Stream != nil && d.db.Stream.Enabled {
		since := caughtUp
		if since.IsZero() {
			since = d.started
		}
		rpo := now.Sub(since)
		d.agent.Metrics.rpo.WithLabelValues(d.db.Name).Set(rpo.Seconds())
		d.agent.Board.setRPO(d.db.Name, rpo, up)
		limit := time.Duration(d.cfg.Alerts.LagThreshold)
		if limit <= 0 {
			limit = 5 * time.Minute
		}
		if rpo > limit {
			d.agent.Alerts.Raise(ctx, d.db.Name, "lag", fmt.Sprintf("RPO %s exceeds %s (stream up: %v)", rpo.Round(time.Second), limit, up))
		} else {
			d.agent.Alerts.Resolve(ctx, d.db.Name, "lag")
		}
	}
	if b := d.db.Backup; b != nil {
		sched, _ := cronParser.Parse(b.Schedule)
		from := lastOK
		if from.Before(d.started) {
			from = d.started // the agent cannot be blamed for time it was not running
		}
		if due := sched.Next(from); now.After(due.Add(d.agent.MissedGrace)) {
			d.agent.Alerts.Raise(ctx, d.db.Name, "missed_backup", fmt.Sprintf("no successful backup since %s; one was due at %s",
				lastOK.UTC().Format(time.RFC3339), due.UTC().Format(time.RFC3339)))
		}
	}
}

// runJob runs a scheduled job with metrics and alerts.
func (d *dbRun) runJob(ctx context.Context, log *slog.Logger, job string, fn func(context.Context) error) {
	start := d.agent.Now()
	log.Info("job started", "job", job)
	err := fn(ctx)
	took := d.agent.Now().Sub(start)
	d.agent.Metrics.job(d.db.Name, job, start, took, err)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		log.Error("job failed", "job", job, "err", err, "seconds", took.Seconds())
		d.agent.Alerts.Raise(ctx, d.db.Name, job, fmt.Sprintf("%s failed: %v", job, err))
		return
	}
	log.Info("job succeeded", "job", job, "seconds", took.Seconds())
	d.agent.Alerts.Resolve(ctx, d.db.Name, job)
	d.agent.Board.invalidate(d.db.Name)
	if sum, err := d.agent.Runner.Repository(ctx, d.db); err == nil {
		d.agent.Metrics.repository(d.db.Name, sum)
	}
}

func (d *dbRun) backup(ctx context.Context) error {
	if _, err := d.agent.Runner.Backup(ctx, d.db); err != nil {
		return err
	}
	now := d.agent.Now()
	d.mu.Lock()
	d.lastBackupOK = now
	d.mu.Unlock()
	d.agent.Metrics.lastBackup.WithLabelValues(d.db.Name).Set(float64(now.Unix()))
	d.agent.Alerts.Resolve(ctx, d.db.Name, "missed_backup")
	select {
	case d.kick <- struct{}{}:
	default:
	}
	return nil
}

func (d *dbRun) drill(ctx context.Context) error {
	res, err := d.agent.Runner.Drill(ctx, d.db)
	if res.RTO > 0 {
		d.agent.Metrics.drillRTO.WithLabelValues(d.db.Name).Set(res.RTO.Seconds())
	}
	return err
}
