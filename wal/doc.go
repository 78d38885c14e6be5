// Package wal archives PostgreSQL's write-ahead log over the physical
// replication protocol: a replication slot, START_REPLICATION, segments
// made durable in the repository before the slot's flush position moves.
package wal
