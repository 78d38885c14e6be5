// Package oplog archives MongoDB's oplog (local.oplog.rs) with a tailable,
// await-data cursor, detecting rollover as a gap.
package oplog
