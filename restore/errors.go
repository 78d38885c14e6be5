package restore

import (
	"context"
	"errors"
	"fmt"

	"github.com/tidemark/tidemark/archive"
)

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

// Unfinished wraps the error that stopped a restore after it had begun
// writing: it says what the target now holds and how to start again, so a
// Ctrl-C or a failure never leaves a half-restored server without a word.
// errors.Is still sees the cause (context.Canceled, a class of archive).
func Unfinished(err error, state, cleanup string) error {
	if err == nil {
		return nil
	}
	verb := "failed"
	if errors.Is(err, context.Canceled) {
		verb = "was interrupted"
	}
	return &UnfinishedError{Err: err, Verb: verb, State: state, Cleanup: cleanup}
}

// UnfinishedError is a restore stopped part way.
type UnfinishedError struct {
	Err     error
	Verb    string // "failed" or "was interrupted"
	State   string // what the target holds now
	Cleanup string // how to clean it or start again
}

func (e *UnfinishedError) Error() string {
	return fmt.Sprintf("%v\nthe restore %s part way: %s; %s", e.Err, e.Verb, e.State, e.Cleanup)
}

func (e *UnfinishedError) Unwrap() error { return e.Err }
