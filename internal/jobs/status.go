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
	Streams    []StreamEntry           `json:"streams"`
	Gaps       []archive.GapRecord     `json:"gaps"`
	Backups    []archive.BackupSummary `json:"backups"`
	LastVerify *VerifyRecord           `json:"last_verify,omitempty"`
	LastDrill  *restore.DrillReport    `json:"last_drill,omitempty"`
	Areas      map[string]AreaUsage    `json:"areas"`
	Total      AreaUsage               `json:"total"`
}

// StreamEntry is one stream with the window a restore can reach on it:
// from the end of the oldest base backup that pairs with it to its newest
// durable change.
type StreamEntry struct {
	engine.StreamStatus
	Earliest *time.Time `json:"earliest,omitempty"` // nil: no base backup yet
	AgeSec   float64    `json:"age_seconds"`        // since Latest: the RPO if the source died now
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
	if rep.Backups, err = backups(ctx, repo); err != nil {
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
	for _, e := range reg.Engines() {
		streams, err := e.Status(ctx, repo)
		if err != nil {
			return nil, err
		}
		for _, s := range streams {
			rep.Streams = append(rep.Streams, window(now, s, rep.Backups, rep.Gaps))
		}
	}
	if rep.LastVerify, rep.LastDrill, err = lastReports(ctx, repo); err != nil {
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
	}
	return e
}

// backups reads the catalog; a repository whose oldest backups predate
// the catalog needs the key for their summaries, which status does
// without: it then lists ids only.
func backups(ctx context.Context, repo *archive.Repository) ([]archive.BackupSummary, error) {
	b, err := repo.Backups(ctx)
	if errors.Is(err, archive.ErrNoIdentity) {
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
