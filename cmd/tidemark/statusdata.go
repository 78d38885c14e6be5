package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/restore"
)

// recoverableStatus is the window a restore can reach, per stream: from the
// end of the oldest backup the stream pairs with to the newest archived
// change. Latest is the time the newest change was archived (PostgreSQL) or
// the newest event's own time (binlog, oplog).
type recoverableStatus struct {
	Stream   string     `json:"stream"`
	Earliest *time.Time `json:"earliest,omitempty"` // nil: no base backup yet
	Latest   *time.Time `json:"latest,omitempty"`   // nil: nothing archived yet
	Position string     `json:"position,omitempty"` // newest durable stream position
	AgeSec   float64    `json:"age_seconds"`        // since Latest: the RPO if the source died now
	Gaps     []string   `json:"gaps"`
}

// streamStatus describes one binlog/oplog stream's archive.
type streamStatus struct {
	Stream    string    `json:"stream"`
	Segments  int       `json:"segments"`
	Events    int64     `json:"events"`
	Bytes     int64     `json:"bytes"`
	Start     string    `json:"start"`
	End       string    `json:"end"`
	FirstTime time.Time `json:"first_time"`
	LastTime  time.Time `json:"last_time"`
	Breaks    []string  `json:"breaks"`
}

// changeStreamPrefixes are where engines other than PostgreSQL keep their
// streams.
var changeStreamPrefixes = []string{"binlog", "oplog"}

func changeStreams(ctx context.Context, r *archive.Repository) ([]streamStatus, error) {
	var out []streamStatus
	for _, p := range changeStreamPrefixes {
		names, err := r.Streams(ctx, p)
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			c, err := r.ReadStream(ctx, name)
			if err != nil {
				return nil, err
			}
			s := streamStatus{Stream: name, Segments: len(c.Segments), Breaks: []string{}}
			for _, seg := range c.Segments {
				s.Events += seg.Events
				s.Bytes += seg.Bytes
			}
			if len(c.Segments) > 0 {
				first, last := c.Segments[0], c.Segments[len(c.Segments)-1]
				s.Start, s.FirstTime, s.End, s.LastTime = first.Start, first.FirstTime, last.End, last.LastTime
			}
			for _, b := range c.Breaks {
				s.Breaks = append(s.Breaks, b.String())
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// recoverable derives the windows from what status already gathered.
func recoverable(now time.Time, backups []archive.BackupSummary, wals []walStatus, streams []streamStatus, gaps []archive.GapRecord) []recoverableStatus {
	var out []recoverableStatus
	oldestEnd := func(stream string) *time.Time {
		var t *time.Time
		for _, b := range backups {
			if b.Stream == stream && (t == nil || b.Finished.Before(*t)) {
				f := b.Finished.UTC()
				t = &f
			}
		}
		return t
	}
	recorded := func(engine string) []string {
		out := []string{}
		for _, g := range gaps {
			if g.Engine == engine {
				out = append(out, fmt.Sprintf("stream stopped at %s (%s): %s", g.From, g.Detected.UTC().Format(time.RFC3339), g.Reason))
			}
		}
		return out
	}
	if len(wals) > 0 {
		w := wals[len(wals)-1] // the newest timeline is where a restore ends
		rs := recoverableStatus{Stream: "wal", Earliest: oldestEnd(""), Position: fmt.Sprintf("%s on timeline %d", w.End, w.Timeline)}
		if t, err := time.Parse(time.RFC3339, w.LastWrite); err == nil {
			rs.Latest = &t
			rs.AgeSec = now.Sub(t).Seconds()
		}
		for _, tl := range wals {
			rs.Gaps = append(rs.Gaps, tl.Gaps...)
		}
		rs.Gaps = append(recorded("postgres"), rs.Gaps...)
		out = append(out, rs)
	}
	for _, s := range streams {
		engine := "mongodb"
		if strings.HasPrefix(s.Stream, "binlog") {
			engine = "mysql"
		}
		rs := recoverableStatus{Stream: s.Stream, Earliest: oldestEnd(s.Stream), Position: s.End, Gaps: append(recorded(engine), s.Breaks...)}
		if !s.LastTime.IsZero() {
			t := s.LastTime.UTC()
			rs.Latest = &t
			rs.AgeSec = now.Sub(t).Seconds()
		}
		out = append(out, rs)
	}
	return out
}

// lastReports reads the newest verify and drill reports; a repository
// without them yields nils.
func lastReports(ctx context.Context, r *archive.Repository) (*verifyReport, *restore.DrillReport, error) {
	var v verifyReport
	var d restore.DrillReport
	okV, err := r.LatestReport(ctx, "verify", &v)
	if err != nil {
		return nil, nil, err
	}
	okD, err := r.LatestReport(ctx, "drill", &d)
	if err != nil {
		return nil, nil, err
	}
	var vp *verifyReport
	var dp *restore.DrillReport
	if okV {
		vp = &v
	}
	if okD {
		dp = &d
	}
	return vp, dp, nil
}

// backupsForStatus reads the catalog; a repository whose oldest backups
// predate the catalog needs the key for their summaries, which status does
// without: it then lists ids only.
func backupsForStatus(ctx context.Context, r *archive.Repository) ([]archive.BackupSummary, error) {
	b, err := r.Backups(ctx)
	if errors.Is(err, archive.ErrNoIdentity) {
		ids, lerr := r.ListManifests(ctx)
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
