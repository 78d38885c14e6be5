package engine

import (
	"slices"
	"time"

	"github.com/tidemark/tidemark/archive"
)

// StreamStatus is one archived stream as status shows it: the common
// shape every engine fills, plus the engine's own detail.
type StreamStatus struct {
	Engine string `json:"engine"`
	// Stream names the stream ("wal", "binlog/<server>", "oplog/<set>").
	Stream string `json:"stream"`
	// Continues names the streams this one carries on from (a promoted
	// MariaDB replica's binlog continues its old primary's): a restore
	// of a base paired with them replays into this one too.
	Continues []string `json:"continues,omitempty"`
	// Latest is when the newest durable change happened (binlog, oplog:
	// the event's own time) or was archived (WAL); nil when empty.
	Latest *time.Time `json:"latest,omitempty"`
	// Position is the newest durable stream position.
	Position string `json:"position,omitempty"`
	// Gaps are holes in the stream and gaps the streamer recorded.
	Gaps []string `json:"gaps"`
	// Lines describe the stream for people.
	Lines []string `json:"-"`
	// Detail is the engine's own description (timelines, binlog files,
	// oplog spans) for --json.
	Detail any `json:"detail,omitempty"`
	// Heartbeat is the newest record the engine's streamer left of its
	// state (filled by status from the repository, not by the engine).
	Heartbeat *archive.Heartbeat `json:"heartbeat,omitempty"`
	// ReachesCaughtUp: the engine restores to any time up to when the
	// streamer last held everything the server wrote (its heartbeat's
	// caught_up_at), not only up to the newest change: on an idle source
	// the window runs on past the newest change.
	ReachesCaughtUp bool `json:"-"`
}

// Pairs reports whether a backup's stream is this one: a restore of that
// backup replays this stream.
func (s StreamStatus) Pairs(backupEngine, backupStream string) bool {
	if backupStream == "" {
		return backupEngine == s.Engine // PostgreSQL bases name no stream: their WAL is the repository's
	}
	return backupStream == s.Stream || slices.Contains(s.Continues, backupStream)
}
