//go:build !linux

package postgres

import "os"

// startWriteback is a Linux optimisation (sync_file_range); elsewhere the
// fsync at the end of each file does all the work.
func startWriteback(*os.File, int64, int64) {}
