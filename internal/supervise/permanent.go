package supervise

import (
	"errors"

	"github.com/tidemark/tidemark/archive"
)

// Permanent reports whether err ends streaming instead of being retried:
// reconnecting cannot fix any of these, so retrying would only bury them
// in a log.
//
// Not listed: ErrLocked (the stream's lock is taken before it starts).
func Permanent(err error) bool {
	switch {
	case errors.Is(err, archive.ErrNoIdentity), errors.Is(err, archive.ErrWrongIdentity), errors.Is(err, archive.ErrKeyFile):
		// A stream writes with the public keys and reads plaintext
		// metadata; when it needs a key after all (an oplog stream
		// starting at a backup that predates the catalog), no reconnect
		// brings one.
		return true
	case errors.Is(err, archive.ErrGap):
		// History is missing: the remedy is a new base backup.
		return true
	case errors.Is(err, archive.ErrMisconfigured), errors.Is(err, archive.ErrSourceMismatch):
		// The source cannot be archived as configured (no binary log, no
		// oplog, no replication slot …), or it is not the cluster the
		// repository holds: the DBA's fix.
		return true
	case errors.Is(err, archive.ErrCorrupt), errors.Is(err, archive.ErrUnsupported):
		// Data from the source or the repository does not decode, or is in
		// a format this version does not know.
		return true
	case errors.Is(err, archive.ErrExist), errors.Is(err, archive.ErrLockLost):
		// Another writer owns the stream: an object this streamer was
		// about to write exists already, or its lease was taken over. (A
		// wal session reloads the archive's end, so its own earlier writes
		// never collide; in binlog and oplog the writer outlives sessions
		// and a segment whose data landed without its index collides on
		// every attempt, after a restart too, so retrying cannot help.)
		return true
	}
	return false
}

func isGap(err error) bool { return errors.Is(err, archive.ErrGap) }
