package restore

import "errors"

// Errors a restore refuses with before writing anything.
var (
	// ErrGap: the archive has a hole between the base and the target.
	ErrGap = errors.New("gap in the archive")
	// ErrUnreachable: the target lies outside the recoverable window.
	ErrUnreachable = errors.New("target outside the recoverable window")
)
