package main

import (
	"errors"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/engine"
)

// Exit codes, documented in `tidemark --help` and the README. Stable: scripts
// and monitoring depend on them.
const (
	exitOK             = 0
	exitError          = 1
	exitUsage          = 2
	exitCorrupt        = 3
	exitKey            = 4
	exitNotFound       = 5
	exitGap            = 6
	exitUnreachable    = 7
	exitNotImplemented = 8
	exitLocked         = 9 // another process holds the repository lock, or took it over
	// exitTargetHoldsData: the restore target already holds data (a data
	// directory, a database, a collection). Its own code, so a script can
	// tell "pick another target or --force/--delta" from a failure.
	exitTargetHoldsData = 10
	// exitFetchFailed is wal-fetch's answer when a file exists but cannot be
	// served (unreadable, corrupt, store unreachable). PostgreSQL reads exit 1
	// as "no such file" and would end recovery early and promote, silently
	// losing the rest; above 125 it aborts recovery instead.
	exitFetchFailed = 126
)

func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errFetchFailed):
		return exitFetchFailed
	case errors.Is(err, errUsage), errors.Is(err, engine.ErrUsage), errors.Is(err, engine.ErrUnknownEngine), errors.Is(err, archive.ErrBadURL):
		return exitUsage
	case errors.Is(err, errNotImplemented):
		return exitNotImplemented
	case errors.Is(err, archive.ErrCorrupt), errors.Is(err, archive.ErrVerifyFailed):
		return exitCorrupt
	case errors.Is(err, archive.ErrNoIdentity), errors.Is(err, archive.ErrWrongIdentity), errors.Is(err, archive.ErrKeyFile):
		return exitKey
	case errors.Is(err, archive.ErrGap):
		return exitGap
	case errors.Is(err, archive.ErrUnreachable):
		return exitUnreachable
	case errors.Is(err, archive.ErrLocked), errors.Is(err, archive.ErrLockLost):
		return exitLocked
	case errors.Is(err, archive.ErrTargetHoldsData):
		return exitTargetHoldsData
	case errors.Is(err, archive.ErrNotExist):
		return exitNotFound
	default:
		return exitError
	}
}
