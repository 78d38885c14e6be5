package archive

import "errors"

// The error vocabulary every engine speaks. Engines keep their own,
// precise sentinels (wal.ErrGap, binlog.ErrNotCovered, oplog.ErrRollover …)
// but derive them from these classes with Class, so errors.Is(err,
// archive.ErrGap) holds for a WAL, binlog or oplog gap alike and the CLI
// maps each class to one exit code in one place.
var (
	// ErrGap: history between a base and a target, or between two stream
	// positions, is missing from the archive (and can no longer be taken
	// from the source).
	ErrGap = errors.New("gap in the archive")
	// ErrUnreachable: the target lies outside the recoverable window, or
	// nothing in the repository can reach it.
	ErrUnreachable = errors.New("target outside the recoverable window")
	// ErrTargetHoldsData: what a restore would create already exists on
	// the target (a data directory, a database, a collection); restores
	// never merge into data they did not write unless forced.
	ErrTargetHoldsData = errors.New("restore target already holds data")
	// ErrMisconfigured: the source cannot be archived as it is configured
	// (no binary logging, no oplog, wal_level minimal …); retrying cannot
	// help, the fix is the DBA's.
	ErrMisconfigured = errors.New("source cannot be archived as configured")
)

// Class returns a sentinel error with its own text that also matches class
// under errors.Is: an engine's precise error that belongs to a shared class.
func Class(class error, text string) error { return &classErr{text: text, class: class} }

type classErr struct {
	text  string
	class error
}

func (e *classErr) Error() string        { return e.text }
func (e *classErr) Is(target error) bool { return target == e.class }
