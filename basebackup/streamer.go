// Package basebackup holds what every engine's base backup shares; each
// engine's backup is in its sub-package (basebackup/postgres,
// basebackup/mysql, basebackup/mongodb).
package basebackup

import (
	"context"
	"time"
)

// AwaitStreamer waits, up to timeout, for a running streamer to archive
// the stream range a backup needs: it polls reached until that reports
// true or fails, or ctx ends. false with a nil error means the timeout
// passed.
func AwaitStreamer(ctx context.Context, timeout time.Duration, reached func() (bool, error)) (bool, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ok, err := reached(); ok || err != nil {
			return ok, err
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return false, nil
}

// ArchivedBy says in words who made a backup's stream range durable, from
// what the engines record ("streamer", "backup", "none needed"), for the
// backup's summary line.
func ArchivedBy(by string) string {
	switch by {
	case "streamer":
		return "archived by the running streamer"
	case "backup":
		return "archived by the backup itself (no streamer ran)"
	case "none needed":
		return "nothing to archive: no change during the backup"
	case "":
		return "archiving not recorded"
	}
	return "archived by " + by
}
