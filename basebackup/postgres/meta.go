package postgres

// The engine part of a PostgreSQL backup's manifest: written by Backup,
// read by restore/postgres to plan and place a restore.

// Meta is the engine part of a PostgreSQL backup's manifest.
type Meta struct {
	SystemID       string            `json:"system_identifier"`
	ServerVersion  string            `json:"server_version"`
	Label          string            `json:"label"`
	StartLSN       string            `json:"start_lsn"`
	StartTimeline  uint32            `json:"start_timeline"`
	StopLSN        string            `json:"stop_lsn"`
	StopTimeline   uint32            `json:"stop_timeline"`
	WALSegmentSize uint64            `json:"wal_segment_size"`
	Tablespaces    []TablespaceEntry `json:"tablespaces,omitempty"`
	// WALArchivedBy says who made start..stop durable: "streamer" or "backup".
	WALArchivedBy string `json:"wal_archived_by"`
	// Server is the host:port the backup was read from; FromStandby says
	// it was a standby (the WAL came from the streamer on the primary).
	Server      string `json:"server,omitempty"`
	FromStandby bool   `json:"from_standby,omitempty"`
	// StandbyLag is how far the standby's replay lagged as the backup began.
	StandbyLag float64 `json:"standby_replay_lag_seconds,omitempty"`
	// IncrementalFrom is the backup a PostgreSQL 17+ block-level
	// incremental was taken against: its INCREMENTAL.* files hold only the
	// blocks changed since; the rest of each file comes from there.
	IncrementalFrom string `json:"incremental_from,omitempty"`
	// BlockSize is the server's BLCKSZ (recorded for incrementals).
	BlockSize int `json:"block_size,omitempty"`
	// Received counts the bytes of archives and manifest the server sent.
	Received int64 `json:"received_bytes,omitempty"`
}

// TablespaceEntry is a tablespace as BASE_BACKUP reported it.
type TablespaceEntry struct {
	OID      string `json:"oid"`
	Location string `json:"location"`
}
