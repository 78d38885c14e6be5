package restore

import (
	"log/slog"
	"net"
	"os"
	"time"
)

// What every engine's drill shares: its report, and the plumbing of the
// throwaway server it restores into (a private scratch directory, a free
// loopback port, the OS user of osuser.go).

// DrillReport is what a drill measured, in one shape for every engine. It
// is stored in the repository unencrypted, so it holds counts and
// durations, never names.
type DrillReport struct {
	Job     string    `json:"job"`
	Engine  string    `json:"engine"`
	Started time.Time `json:"started"`
	Backup  string    `json:"backup"`
	Target  string    `json:"target"`
	// ServerStartSeconds is how long the scratch server took to start,
	// when the drill starts it before restoring into it (MySQL); part of
	// the RTO, as a real restore onto a fresh host would pay it too.
	ServerStartSeconds float64 `json:"server_start_seconds,omitempty"`
	RestoreSeconds     float64 `json:"restore_seconds"`
	RecoverySeconds    float64 `json:"recovery_seconds"`
	// RTOSeconds runs from the drill's start until the server accepted
	// writes: scratch server start, restore and recovery.
	RTOSeconds     float64 `json:"rto_seconds"`
	Databases      int     `json:"databases"`
	Tables         int     `json:"tables"`
	Rows           int64   `json:"rows"`
	IndexesChecked int     `json:"indexes_checked"`
	Problems       int     `json:"problems"`
	OK             bool    `json:"ok"`
}

// NewDrillReport starts the report of a drill of engine to target, timed
// from now.
func NewDrillReport(engine, target string) *DrillReport {
	return &DrillReport{Job: "drill", Engine: engine, Started: time.Now().UTC(), Target: target}
}

// ScratchDir creates a drill's private scratch directory under parent
// (default: the temp dir); the caller removes it with os.RemoveAll.
func ScratchDir(parent string) (string, error) {
	return os.MkdirTemp(parent, "tidemark-drill-")
}

// FreePort asks the kernel for a free loopback TCP port for a scratch
// server.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// OrDiscard is l, or a logger that drops everything when l is nil: a drill
// logs only when its caller asks.
func OrDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
