package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/restore"
	"github.com/tidemark/tidemark/wal"
)

// Recovered is what PostgreSQL reported about a finished recovery.
type Recovered struct {
	// StoppedAt is PostgreSQL's own account of where recovery stopped
	// ("recovery stopping before commit of transaction 1234, time …", or
	// "redo done at …" when everything archived was replayed).
	StoppedAt string
	// LastCommit is "last completed transaction was at log time …", when
	// PostgreSQL says it.
	LastCommit string
	// Segments counts the WAL segments PostgreSQL restored from the
	// archive (its "restored log file" lines).
	Segments int
	Took     time.Duration
	LogFile  string
}

// ErrRunningAsRoot: PostgreSQL refuses to run as root.
var ErrRunningAsRoot = errors.New("PostgreSQL does not run as root: run `restore --start` as the database's OS user (for example with sudo -u postgres), or as root with --run-as naming that user")

// StartRestored starts PostgreSQL on a restored directory, waits until
// recovery has reached its target and the server promoted, and checks from
// the server's log that the target was really reached. The server keeps
// running; its log is LogFile. progress, when set, hears the number of WAL
// segments restored so far whenever it grows.
func StartRestored(ctx context.Context, dir, binDir string, port int, timeout time.Duration, as *restore.OSUser, progress func(segments int)) (*Recovered, error) {
	if os.Geteuid() == 0 && as == nil {
		return nil, ErrRunningAsRoot
	}
	if Incomplete(dir) {
		return nil, refuseIncomplete(dir)
	}
	logFile := filepath.Join(dir, "tidemark-restore.log")
	start := time.Now()
	cmd := as.Command(ctx, filepath.Join(binDir, "pg_ctl"), "start", "-D", dir, "-l", logFile, "-W",
		"-o", fmt.Sprintf("-p %d -c listen_addresses=localhost -c unix_socket_directories=%s", port, dir))
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pg_ctl start: %v: %s", err, strings.TrimSpace(string(out)))
	}
	rec := &Recovered{LogFile: logFile}
	deadline := time.Now().Add(timeout)
	seenRunning := false // pg_ctl -W returns before the postmaster writes its pid file
	reported := 0
	for {
		done, err := scanRecoveryLog(logFile, rec)
		if err != nil {
			return rec, err
		}
		if progress != nil && rec.Segments > reported {
			reported = rec.Segments
			progress(reported)
		}
		if done {
			rec.Took = time.Since(start)
			return rec, nil
		}
		if time.Now().After(deadline) {
			return rec, fmt.Errorf("recovery did not finish within %s; see %s", timeout, logFile)
		}
		if running(binDir, dir, as) {
			seenRunning = true
		} else if seenRunning {
			// It stopped between two reads of its log: its last lines say why.
			if _, err := scanRecoveryLog(logFile, rec); err != nil {
				return rec, err
			}
			return rec, fmt.Errorf("PostgreSQL stopped during recovery; see %s:\n%s", logFile, tail(logFile, 15))
		}
		select {
		case <-ctx.Done():
			return rec, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// scanRecoveryLog reads what the server logged so far: done once it is
// promoted and accepts connections; an error if recovery failed short of
// the target.
func scanRecoveryLog(path string, rec *Recovered) (done bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return false, nil // not written yet
	}
	defer f.Close()
	var promoted, ready bool
	var fetchErr string // restore_command's own complaint, logged before PostgreSQL's FATAL
	rec.Segments = 0    // the log is read from its start each time
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case restoredSegment(line):
			rec.Segments++
		case strings.HasPrefix(line, "tidemark: "):
			fetchErr = line
		case strings.Contains(line, "recovery ended before configured recovery target was reached"):
			return false, fmt.Errorf("%w: the archive ends before the target (PostgreSQL: %s)", restore.ErrUnreachable, after(line, "FATAL:"))
		case strings.Contains(line, "recovery stopping"):
			rec.StoppedAt = after(line, "LOG:")
		case strings.Contains(line, "redo done at") && rec.StoppedAt == "":
			rec.StoppedAt = after(line, "LOG:") // replayed everything: no target stop line
		case strings.Contains(line, "last completed transaction was at log time"):
			rec.LastCommit = after(line, "LOG:")
		case strings.Contains(line, "selected new timeline ID"), strings.Contains(line, "archive recovery complete"):
			promoted = true
		case strings.Contains(line, "database system is ready to accept connections"):
			ready = true
		case strings.Contains(line, "FATAL:") || strings.Contains(line, "PANIC:"):
			msg := after(line, "FATAL:")
			if !strings.Contains(line, "FATAL:") {
				msg = after(line, "PANIC:")
			}
			if fetchErr != "" {
				msg += " (restore_command: " + fetchErr + ")"
			}
			err := fmt.Errorf("recovery failed: %s", msg)
			if class := fetchClass(fetchErr); class != nil {
				err = fmt.Errorf("%w: %w", class, err)
			}
			return false, err
		}
	}
	return promoted && ready, sc.Err()
}

// restoredSegment recognises PostgreSQL's line for a WAL segment it
// restored from the archive (not a history file).
func restoredSegment(line string) bool {
	_, rest, ok := strings.Cut(line, `restored log file "`)
	if !ok {
		return false
	}
	name, _, ok := strings.Cut(rest, `"`)
	return ok && len(name) == 24 && strings.Trim(name, "0123456789ABCDEF") == ""
}

// fetchClass recovers the error class of what restore_command (tidemark
// wal-fetch) printed before recovery aborted, so a corrupt or unreadable
// archived WAL file fails the restore as corruption (exit 3) or a key
// problem (exit 4) rather than a generic error; nil for anything else.
func fetchClass(line string) error {
	for _, class := range []error{archive.ErrCorrupt, archive.ErrWrongIdentity, archive.ErrNoIdentity, archive.ErrKeyFile} {
		if line != "" && strings.Contains(line, class.Error()) {
			return class
		}
	}
	return nil
}

func after(line, marker string) string {
	if i := strings.Index(line, marker); i >= 0 {
		return strings.TrimSpace(line[i+len(marker):])
	}
	return strings.TrimSpace(line)
}

func running(binDir, dir string, as *restore.OSUser) bool {
	return as.Command(context.Background(), filepath.Join(binDir, "pg_ctl"), "status", "-D", dir).Run() == nil
}

// StopRestored stops a server StartRestored started (immediate mode: a
// drill's scratch instance has nothing worth a checkpoint).
func StopRestored(ctx context.Context, dir, binDir string, as *restore.OSUser) error {
	if out, err := as.Command(ctx, filepath.Join(binDir, "pg_ctl"), "stop", "-D", dir, "-m", "immediate", "-w").CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// BinDir finds the server binaries for a backup's PostgreSQL version:
// Debian's /usr/lib/postgresql/<major>/bin, PGDG's /usr/pgsql-<major>/bin,
// the postgres on PATH, pg_config's bindir — the first whose postgres is
// of that major (another major's server cannot start the directory).
func BinDir(serverVersion string) (string, error) {
	want, err := wal.ParseVersion(serverVersion)
	if err != nil {
		return "", err
	}
	major := fmt.Sprint(want.Major)
	dirs := []string{filepath.Join("/usr/lib/postgresql", major, "bin"), "/usr/pgsql-" + major + "/bin"}
	if p, err := exec.LookPath("postgres"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	var found []string
	for _, d := range dirs {
		out, err := exec.Command(filepath.Join(d, "postgres"), "--version").Output()
		if err != nil {
			continue
		}
		// "postgres (PostgreSQL) 17.10"
		_, ver, _ := strings.Cut(strings.TrimSpace(string(out)), ") ")
		if v, err := wal.ParseVersion(ver); err == nil && v.Major == want.Major {
			return d, nil
		}
		found = append(found, d+" (PostgreSQL "+ver+")")
	}
	if len(found) > 0 {
		return "", fmt.Errorf("PostgreSQL %d binaries not found, only %s (pass --pg-bindir)", want.Major, strings.Join(found, ", "))
	}
	return "", fmt.Errorf("PostgreSQL %d binaries not found (pass --pg-bindir)", want.Major)
}
