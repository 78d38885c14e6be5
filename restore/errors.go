package restore

import "errors"

// Errors a restore refuses with before writing anything.
var (
	// ErrGap: the archive has a hole between the base and the target.
	ErrGap = errors.New("gap in the archive")
	// ErrUnreachable: the target lies outside the recoverable window.
	ErrUnreachable = errors.New("target outside the recoverable window")
	// ErrTargetExists: what the restore would create (a MySQL database, a
	// MongoDB collection) exists on the target server; restores never
	// merge into data they did not write unless forced.
	ErrTargetExists = errors.New("restore target already holds data")
)
