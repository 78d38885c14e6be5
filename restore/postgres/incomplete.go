package postgres

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/tidemark/tidemark/archive"
)

// IncompleteMarker is a file a restore writes into the target directory
// before anything else and removes as its very last step: a restore that
// failed or was killed leaves a directory that says it is unusable, and
// that a later plain restore refuses and `restore --delta` finishes.
const IncompleteMarker = "tidemark_restore_incomplete"

// markIncomplete writes the marker, durably, before any of the backup's
// files are written.
func markIncomplete(dir, backupID string) error {
	text := fmt.Sprintf("A tidemark restore of backup %s into this directory started at %s and has not finished.\n"+
		"The directory is NOT a usable PostgreSQL data directory: run the restore again with --delta to finish it,\n"+
		"or remove the directory.\n", backupID, time.Now().UTC().Format(time.RFC3339))
	p := filepath.Join(dir, IncompleteMarker)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		return fmt.Errorf("mark %s incomplete: %w", dir, err)
	}
	return syncPath(dir)
}

// markComplete removes the marker once everything else is durable.
func markComplete(dir string) error {
	if err := os.Remove(filepath.Join(dir, IncompleteMarker)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("mark %s complete: %w", dir, err)
	}
	return syncPath(dir)
}

// Incomplete reports whether dir holds a restore that did not finish.
func Incomplete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, IncompleteMarker))
	return err == nil
}

// failedInto explains a restore that failed after it began writing dir.
func failedInto(dir string, err error) error {
	return fmt.Errorf("%w\nthe target directory %s is incomplete (marked by %s): run the restore again with --delta to finish it, or remove it",
		err, dir, IncompleteMarker)
}

// refuseIncomplete is the error for a directory holding an unfinished restore.
func refuseIncomplete(dir string) error {
	return fmt.Errorf("%w: target directory %s holds an unfinished restore (%s): run the restore with --delta to finish it, or remove the directory",
		archive.ErrTargetHoldsData, dir, IncompleteMarker)
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
