// Package binlog archives MySQL/MariaDB binary logs by registering as a
// replica and storing events byte for byte as the server sent them, and
// reads them back for replay.
//
// Capture (Stream): go-mysql's BinlogSyncer in raw mode, positioned by
// binlog file and offset — the exact resume point after the last durable
// transaction — with the GTID state tracked alongside and checked on every
// connect and every transaction. Events are grouped into whole
// transactions and appended to an archive.StreamWriter; each segment is a
// valid binlog fragment (magic, format description, events) grouped by the
// server's binlog file. See docs/format.md, "Binlog segments".
//
// Read side: CheckCoverage refuses, before anything is written, a range
// the archive does not hold (ErrNotCovered) or a target outside it
// (ErrOutsideWindow, naming the window); Reader yields whole transactions
// from a base position to a Target. restore.ReplayBinlog applies them.
package binlog
