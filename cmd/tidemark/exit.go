package main

import (
	"errors"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/restore"
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
)

func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsage), errors.Is(err, archive.ErrBadURL):
		return exitUsage
	case errors.Is(err, errNotImplemented):
		return exitNotImplemented
	case errors.Is(err, archive.ErrCorrupt), errors.Is(err, archive.ErrVerifyFailed):
		return exitCorrupt
	case errors.Is(err, archive.ErrNoIdentity), errors.Is(err, archive.ErrWrongIdentity):
		return exitKey
	case errors.Is(err, restore.ErrGap):
		return exitGap
	case errors.Is(err, restore.ErrUnreachable):
		return exitUnreachable
	case errors.Is(err, archive.ErrNotExist):
		return exitNotFound
	default:
		return exitError
	}
}
