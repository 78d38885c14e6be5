package mysql

// What a MySQL/MariaDB backup records, written by Backup and read by
// restore/mysql: the manifest's engine part (Meta), the schema.json file
// (Schema) and each table part's FileEntry.Extra (PartExtra). The rows
// themselves are in the row format (rows.go).

import (
	"time"

	"github.com/tidemark/tidemark/binlog"
)

// Meta is the engine part of a MySQL backup's manifest.
type Meta struct {
	ServerVersion string    `json:"server_version"`
	ServerID      uint32    `json:"server_id"`
	ClusterID     string    `json:"cluster_id"`
	BinlogFile    string    `json:"binlog_file"`
	BinlogPos     uint32    `json:"binlog_pos"`
	GTID          string    `json:"gtid,omitempty"`
	SnapshotTime  time.Time `json:"snapshot_time"`
	LockHeldMS    float64   `json:"lock_held_ms"`   // commits were blocked this long
	DDLBlockedMS  float64   `json:"ddl_blocked_ms"` // DDL was blocked this long
	RowFormat     int       `json:"row_format"`
	Databases     []string  `json:"databases"`
	Tables        int       `json:"tables"`
	LockedTables  int       `json:"locked_tables,omitempty"` // non-transactional, copied under the lock
	Rows          int64     `json:"rows"`
	WithUsers     bool      `json:"with_users,omitempty"`
	// Replica is set when the snapshot was taken on a replica: BinlogFile
	// and BinlogPos are then empty and GTID is the primary's GTID position
	// the snapshot holds.
	Replica *ReplicaSnapshot `json:"replica,omitempty"`
}

// ReplicaSnapshot is a replica's own binlog coordinates at the snapshot,
// recorded for information only (empty when it has no binlog).
type ReplicaSnapshot struct {
	BinlogFile string `json:"binlog_file,omitempty"`
	BinlogPos  uint32 `json:"binlog_pos,omitempty"`
	GTID       string `json:"gtid,omitempty"`
}

// Position is the binlog position the snapshot is consistent with, in the
// binlog stream's notation (FILE:POS[#GTID], or #GTID for a snapshot
// taken on a replica).
func (m Meta) Position() binlog.Position {
	return binlog.Position{File: m.BinlogFile, Pos: m.BinlogPos, GTID: m.GTID}
}

// SchemaFile is the backup file holding the Schema.
const SchemaFile = "schema.json"

// Schema is everything a restore recreates besides table rows; stored
// as the backup's schema.json file (encrypted like any file).
type Schema struct {
	Databases []Database `json:"databases"`
	// Users holds CREATE USER and GRANT statements (--with-users).
	Users []string `json:"users,omitempty"`
}

// Database is one schema.
type Database struct {
	Name     string   `json:"name"`
	Create   string   `json:"create"`
	Tables   []Table  `json:"tables"`
	Views    []Object `json:"views,omitempty"`
	Routines []Object `json:"routines,omitempty"`
	Triggers []Object `json:"triggers,omitempty"`
	Events   []Object `json:"events,omitempty"`
}

// Table is a base table: its exact SHOW CREATE TABLE and where its
// rows are.
type Table struct {
	Name       string   `json:"name"`
	Engine     string   `json:"engine"`
	Create     string   `json:"create"`
	Columns    []Column `json:"columns"` // stored columns in order (generated ones are recomputed)
	PrimaryKey []string `json:"primary_key,omitempty"`
	Parts      []string `json:"parts"` // backup file paths of its row streams, in key order
	Rows       int64    `json:"rows"`
	// Locked: a non-transactional table, copied while writes were blocked.
	Locked bool `json:"locked,omitempty"`
	// The server's estimates, for splitting and scheduling the dump; not stored.
	estRows, estBytes int64
}

// Column is a stored column.
type Column struct {
	Name     string     `json:"name"`
	DataType string     `json:"data_type"`
	Kind     ColumnKind `json:"kind"`
}

// Object is a view, routine, trigger or event with the session
// settings it was created under (they change its meaning).
type Object struct {
	Name                string `json:"name"`
	Type                string `json:"type,omitempty"` // PROCEDURE or FUNCTION for routines
	Create              string `json:"create"`
	SQLMode             string `json:"sql_mode,omitempty"`
	TimeZone            string `json:"time_zone,omitempty"`
	CharsetClient       string `json:"character_set_client"`
	CollationConnection string `json:"collation_connection"`
	DatabaseCollation   string `json:"database_collation,omitempty"`
}

// PartExtra is the FileEntry.Extra of a table part.
type PartExtra struct {
	Rows int64 `json:"rows"`
}
