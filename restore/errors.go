package restore

import "github.com/tidemark/tidemark/archive"

// Errors a restore refuses with before writing anything: the shared
// classes of archive, named here where restores raise them.
var (
	// ErrGap: the archive has a hole between the base and the target.
	ErrGap = archive.ErrGap
	// ErrUnreachable: the target lies outside the recoverable window.
	ErrUnreachable = archive.ErrUnreachable
	// ErrTargetExists: what the restore would create (a MySQL database, a
	// MongoDB collection) exists on the target server; restores never
	// merge into data they did not write unless forced.
	ErrTargetExists = archive.ErrTargetHoldsData
)
