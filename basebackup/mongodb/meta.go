package mongodb

// What a MongoDB backup records, written by Backup and read by
// restore/mongodb: the manifest's engine part (Meta) and each
// collection's FileEntry.Extra (CollectionMeta). A collection's file holds
// its documents as raw BSON, back to back, in _id order.

import (
	"encoding/json"
	"time"
)

// Meta is the engine part of a MongoDB backup's manifest.
type Meta struct {
	Flavour string `json:"flavour"`
	Version string `json:"version"`
	SetName string `json:"set_name"`
	// StartTS: the base holds every write at or before it, and may hold
	// later ones; a restore replays the oplog after it. StopTS: the newest
	// entry once the scan ended, the earliest point the base restores to.
	StartTS     string    `json:"start_ts"`
	StopTS      string    `json:"stop_ts"`
	StopTime    time.Time `json:"stop_time"` // wall clock when StopTS was read
	Collections int       `json:"collections"`
	Documents   int64     `json:"documents"`
	// OplogArchivedBy says who made StartTS..StopTS durable: "streamer",
	// "backup", or "none needed" when nothing was written during the scan.
	OplogArchivedBy string `json:"oplog_archived_by"`
}

// CollectionMeta is what a backup records of a collection besides its
// documents, in the file entry's Extra; BSON values in canonical Extended
// JSON so every type survives.
type CollectionMeta struct {
	Type      string            `json:"type"`
	Options   json.RawMessage   `json:"options,omitempty"`
	Indexes   []json.RawMessage `json:"indexes,omitempty"`
	Documents int64             `json:"documents"`
}
