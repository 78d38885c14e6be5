package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/restore"
)

// StatusReport is what `status` shows of a repository. It reads only the
// unencrypted bookkeeping: no key needed.
type StatusReport struct {
	Repository  string          `json:"repository"`
	ID          string          `json:"id"`
	Created     string          `json:"created"`
	Encryption  string          `json:"encryption"`
	Recipients  []string        `json:"recipients,omitempty"`
	Compression string          `json:"compression"`
	Source      *archive.Source `json:"source,omitempty"`
	// Streams: one entry per archived stream of every engine, in one
	// shape — its recoverable window, newest change and gaps — with the
	// engine's own detail.
	Streams []StreamEntry `json:"streams"`
	// Streamers are the newest heartbeat of each engine's streamer, with
	// what it says in one line: streaming, reconnecting and why, stopped
	// and why, or silent (not running, or unable to write here).
	Streamers []Streamer `json:"streamers"`
	// Operations are the backups, restores, verifies and drills running
	// now (or abandoned: their process stopped renewing their record),
	// with their progress.
	Operations []RunningOperation      `json:"operations"`
	Gaps       []archive.GapRecord     `json:"gaps"`
	Backups    []archive.BackupSummary `json:"backups"`
	LastVerify *VerifyRecord           `json:"last_verify,omitempty"`
	LastDrill  *restore.DrillReport    `json:"last_drill,omitempty"`
	Areas      map[string]AreaUsage    `json:"areas"`
	Total      AreaUsage               `json:"total"`
	// Warnings name bookkeeping status could not read (a damaged catalog
	// entry, report or gap record): it shows what it can, and verify says
	// more.
	Warnings []string `json:"warnings"`
}

// StreamEntry is one stream with the window a restore can reach on it:
// from the end of the oldest base backup that pairs with it to its newest
// durable change.
type StreamEntry struct {
	engine.StreamStatus
	Earliest *time.Time `json:"earliest,omitempty"` // nil: no base backup yet
	AgeSec   float64    `json:"age_seconds"`        // since Latest, the newest archived change
	// CaughtUp is when the streamer last held everything the server had
	// written (from its heartbeat): on an idle source, later than Latest.
	CaughtUp *time.Time `json:"caught_up_at,omitempty"`
	// RecoverableTo is the window's end: Latest, or CaughtUp where the
	// engine restores to times up to it (MongoDB).
	RecoverableTo *time.Time `json:"recoverable_to,omitempty"`
	// RPOSec is what would be lost if the source died now, measured as the
	// agent's stream_rpo_seconds gauge is: since CaughtUp, or since Latest
	// when the streamer never said it caught up.
	RPOSec float64 `json:"rpo_seconds"`
}

// Streamer is a streamer's heartbeat and what it means now.
type Streamer struct {
	archive.Heartbeat
	AgeSec float64 `json:"heartbeat_age_seconds"`
	Stale  bool    `json:"stale"`
	// Health is alive (streaming, changes arriving), idle (streaming and
	// caught up, the source quiet for IdleAfter) or down (reconnecting,
	// stopped, or silent).
	Health string `json:"health"`
	// Summary says it for people.
	Summary string `json:"summary"`
}

// AreaUsage counts the objects under one top-level prefix.
type AreaUsage struct {
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
}

// Status gathers the report.
func Status(ctx context.Context, reg *engine.Registry, repo *archive.Repository, now time.Time) (*StatusReport, error) {
	cfg := repo.Config()
	rep := &StatusReport{Repository: repo.Store().Location(), ID: cfg.ID, Created: cfg.Created.Format("2006-01-02 15:04:05Z07:00"),
		Encryption: cfg.Encryption, Recipients: cfg.Recipients, Compression: cfg.Compression, Areas: map[string]AreaUsage{},
		Streams: []StreamEntry{}}
	err := repo.Store().List(ctx, "", "", func(o archive.ObjectInfo) error {
		area, _, _ := strings.Cut(o.Name, "/")
		u := rep.Areas[area]
		u.Objects++
		u.Bytes += o.Size
		rep.Areas[area] = u
		rep.Total.Objects++
		rep.Total.Bytes += o.Size
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep.Warnings = []string{}
	if rep.Backups, err = backups(ctx, repo, rep); err != nil {
		return nil, err
	}
	src, err := repo.Source(ctx)
	switch {
	case err == nil:
		rep.Source = src
	case !errors.Is(err, archive.ErrNotExist):
		return nil, err
	}
	if rep.Gaps, err = repo.Gaps(ctx); err != nil {
		return nil, err
	}
	beats, err := repo.Heartbeats(ctx)
	if err != nil {
		return nil, err
	}
	rep.Streamers = []Streamer{}
	for _, h := range beats {
		rep.Streamers = append(rep.Streamers, streamer(now, h))
	}
	for _, e := range reg.Engines() {
		streams, err := e.Status(ctx, repo)
		if err != nil {
			return nil, err
		}
		for _, s := range streams {
			for i := range beats {
				if beats[i].Engine == s.Engine {
					s.Heartbeat = &beats[i]
				}
			}
			rep.Streams = append(rep.Streams, window(now, s, rep.Backups, rep.Gaps))
		}
	}
	for i := range rep.Streamers {
		rep.Streamers[i].Health = health(now, rep.Streamers[i], rep.Streams)
	}
	ops, err := repo.Operations(ctx)
	if err != nil {
		return nil, err
	}
	rep.Operations = make([]RunningOperation, 0, len(ops))
	for _, o := range ops {
		rep.Operations = append(rep.Operations, runningOperation(now, o))
	}
	if rep.LastVerify, rep.LastDrill, err = lastReports(ctx, repo); errors.Is(err, archive.ErrCorrupt) {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("reports: %v", err))
	} else if err != nil {
		return nil, err
	}
	return rep, nil
}

// window pairs a stream with the backups a restore on it can start from.
// Gaps the engine's streamer recorded come first.
func window(now time.Time, s engine.StreamStatus, backups []archive.BackupSummary, recorded []archive.GapRecord) StreamEntry {
	e := StreamEntry{StreamStatus: s}
	gaps := []string{}
	for _, g := range recorded {
		if g.Engine == s.Engine {
			gaps = append(gaps, fmt.Sprintf("stream stopped at %s (%s): %s", g.From, g.Detected.UTC().Format(time.RFC3339), g.Reason))
		}
	}
	e.Gaps = append(gaps, s.Gaps...)
	for _, b := range backups {
		if s.Pairs(b.Engine, b.Stream) && !b.Finished.IsZero() && (e.Earliest == nil || b.Finished.Before(*e.Earliest)) {
			f := b.Finished.UTC()
			e.Earliest = &f
		}
	}
	if s.Latest != nil {
		e.AgeSec = now.Sub(*s.Latest).Seconds()
		e.RPOSec = e.AgeSec
	}
	if h := s.Heartbeat; h != nil && h.CaughtUp != nil {
		c := h.CaughtUp.UTC()
		e.CaughtUp = &c
		if s.Latest == nil || c.After(*s.Latest) {
			e.RPOSec = now.Sub(c).Seconds()
		}
	}
	e.RecoverableTo = s.Latest
	if s.ReachesCaughtUp && s.Latest != nil && e.CaughtUp != nil && e.CaughtUp.After(*s.Latest) {
		e.RecoverableTo = e.CaughtUp
	}
	return e
}

// backups reads the catalog; a repository whose oldest backups predate
// the catalog needs the key for their summaries, which status does
// without: it then lists ids only.
func backups(ctx context.Context, repo *archive.Repository, rep *StatusReport) ([]archive.BackupSummary, error) {
	b, err := repo.Backups(ctx)
	if errors.Is(err, archive.ErrCorrupt) {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("backups listed by id only: %v", err))
	}
	if errors.Is(err, archive.ErrNoIdentity) || errors.Is(err, archive.ErrCorrupt) {
		ids, lerr := repo.ListManifests(ctx)
		if lerr != nil {
			return nil, lerr
		}
		b = make([]archive.BackupSummary, len(ids))
		for i, id := range ids {
			b[i] = archive.BackupSummary{ID: id}
		}
		return b, nil
	}
	return b, err
}

// lastReports reads the newest verify and drill records; nil where there
// is none.
func lastReports(ctx context.Context, repo *archive.Repository) (*VerifyRecord, *restore.DrillReport, error) {
	var v VerifyRecord
	var d restore.DrillReport
	okV, err := repo.LatestReport(ctx, "verify", &v)
	if err != nil {
		return nil, nil, err
	}
	okD, err := repo.LatestReport(ctx, "drill", &d)
	if err != nil {
		return nil, nil, err
	}
	var vp *VerifyRecord
	var dp *restore.DrillReport
	if okV {
		vp = &v
	}
	if okD {
		dp = &d
	}
	return vp, dp, nil
}

// streamer reads a heartbeat at now.
func streamer(now time.Time, h archive.Heartbeat) Streamer {
	s := Streamer{Heartbeat: h, AgeSec: now.Sub(h.Updated).Seconds(), Stale: h.Stale(now)}
	age := func(t time.Time) string { return now.Sub(t).Round(time.Second).String() + " ago" }
	who := fmt.Sprintf("%s streamer (%s, %s)", h.Stream, h.Holder, h.Source)
	if h.Server != "" { // the host of a multi-host source it follows
		who = fmt.Sprintf("%s streamer (%s, %s via %s)", h.Stream, h.Holder, h.Source, h.Server)
	}
	switch {
	case s.Stale:
		s.Summary = fmt.Sprintf("%s: SILENT — its last heartbeat (%s, %s) is %s: it is not running, or cannot write to the repository",
			who, h.State, h.Updated.UTC().Format(time.RFC3339), age(h.Updated))
		if h.Error != "" {
			s.Summary += "; its last error: " + h.Error
		}
	case h.State == archive.StreamStreaming:
		s.Summary = fmt.Sprintf("%s: streaming since %s (heartbeat %s)", who, h.Since.UTC().Format(time.RFC3339), age(h.Updated))
	case h.State == archive.StreamReconnecting:
		s.Summary = fmt.Sprintf("%s: DOWN since %s, reconnecting: %s", who, h.Since.UTC().Format(time.RFC3339), h.Error)
	case h.State == archive.StreamStopped && h.Error != "":
		s.Summary = fmt.Sprintf("%s: STOPPED at %s: %s", who, h.Since.UTC().Format(time.RFC3339), h.Error)
	case h.State == archive.StreamStopped:
		s.Summary = fmt.Sprintf("%s: stopped cleanly at %s", who, h.Since.UTC().Format(time.RFC3339))
	default:
		s.Summary = fmt.Sprintf("%s: %s since %s %s", who, h.State, h.Since.UTC().Format(time.RFC3339), h.Error)
	}
	return s
}
