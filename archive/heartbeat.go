package archive

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// A streamer records its liveness in the repository, so that status and
// the agent — on any host, without a key — can tell a stream that runs
// from one that reconnects, is stopped, or died without a word:
//
//	heartbeats/<engine>/<unixnano 016x>
//
// JSON, unencrypted (no user data: states, times, an error message and
// the source's address without its password). Written when the state
// changes and at least every Interval while the streamer runs; write-once
// like everything else, so each write is a new object and the older ones
// of that engine are deleted after it. The newest is the state.
const heartbeatPrefix = "heartbeats/"

// HeartbeatVersion is the version of the heartbeat object's JSON. Fields
// added since (Server, Slot, Position, Timeline) are optional: a reader
// of version 1 that does not know them ignores them, so they did not
// change the version.
const HeartbeatVersion = 1

// Streamer states.
const (
	StreamStarting     = "starting"     // running, not yet connected
	StreamStreaming    = "streaming"    // a session streams
	StreamReconnecting = "reconnecting" // a session failed; the next one is due
	StreamStopped      = "stopped"      // the streamer ended (Error says why, if not cleanly)
)

// Heartbeat is one streamer's state.
type Heartbeat struct {
	Version int    `json:"version"`
	Engine  string `json:"engine"`
	Stream  string `json:"stream"` // what the engine's stream is called: WAL, binlog, oplog
	Holder  string `json:"holder"` // host/pid of the streamer
	Source  string `json:"source,omitempty"`
	// Server is the host:port the stream comes from, resolved from the
	// source (after a failover: the promoted server).
	Server string `json:"server,omitempty"`
	// Slot is the replication slot the streamer reads (PostgreSQL).
	Slot string `json:"slot,omitempty"`
	// Position is the durable position in the engine's terms (an LSN, a
	// GTID position) and Timeline its PostgreSQL timeline.
	Position string `json:"position,omitempty"`
	Timeline uint32 `json:"timeline,omitempty"`
	State    string `json:"state"`
	// Since is when the state began; Updated when this record was written.
	Since   time.Time `json:"since"`
	Updated time.Time `json:"updated"`
	// Interval is how often the streamer writes a heartbeat while it runs:
	// one much older than that means it is gone, or cannot write here.
	Interval float64 `json:"interval_seconds"`
	// Error is why the stream is reconnecting or stopped.
	Error   string  `json:"error,omitempty"`
	RetryIn float64 `json:"retry_in_seconds,omitempty"`
	// Durable is when the streamer last made something durable or found
	// itself caught up: what it archived is current as of then.
	Durable *time.Time `json:"durable_at,omitempty"`
	// CaughtUp is the last moment the archive held everything the server
	// had written (the agent's RPO is measured from it): the time of
	// the newest change when the server sends it, else when the streamer
	// found its durable position at the server's end.
	CaughtUp *time.Time `json:"caught_up_at,omitempty"`
}

// Live reports whether h is a streamer that runs: not stopped, not stale.
func (h Heartbeat) Live(now time.Time) bool {
	return h.State != StreamStopped && h.State != "unknown" && !h.Stale(now)
}

// LiveHeartbeat returns the heartbeat of engine's streamer if one runs
// (Live), else nil.
func (r *Repository) LiveHeartbeat(ctx context.Context, engine string, now time.Time) (*Heartbeat, error) {
	hs, err := r.Heartbeats(ctx)
	if err != nil {
		return nil, err
	}
	for _, h := range hs {
		if h.Engine == engine && h.Live(now) {
			return &h, nil
		}
	}
	return nil, nil
}

// Stale reports whether a running streamer's heartbeat is overdue (three
// intervals): it died, or it cannot write to the repository (a full disk,
// lost credentials).
func (h Heartbeat) Stale(now time.Time) bool {
	return h.State != StreamStopped && now.Sub(h.Updated) > 3*time.Duration(h.Interval*float64(time.Second))
}

// PutHeartbeat records h as its engine's newest heartbeat and deletes the
// older ones (putRecord: on a full disk, the record of why the stream is
// stuck can still land in the space they leave).
func (r *Repository) PutHeartbeat(ctx context.Context, h Heartbeat) error {
	if h.Engine == "" || strings.ContainsAny(h.Engine, "/.") {
		return fmt.Errorf("heartbeat: bad engine %q", h.Engine)
	}
	h.Version = HeartbeatVersion
	if err := r.putRecord(ctx, heartbeatPrefix, h.Engine, h.Updated, KindHeartbeat, h); err != nil {
		return fmt.Errorf("write heartbeat: %w", err)
	}
	return nil
}

// Heartbeats returns the newest heartbeat of every engine that has one.
// One that does not read back is returned with the problem as its Error
// and state "unknown", never silently dropped.
func (r *Repository) Heartbeats(ctx context.Context) ([]Heartbeat, error) {
	return newestRecords(ctx, r, heartbeatPrefix, KindHeartbeat, HeartbeatVersion, func(h Heartbeat) int { return h.Version },
		func(eng string, o ObjectInfo, err error) Heartbeat {
			return Heartbeat{Engine: eng, State: "unknown", Updated: o.ModTime, Error: err.Error()}
		})
}
