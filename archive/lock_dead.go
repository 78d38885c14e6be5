//go:build unix

package archive

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// holderDead reports a lease held by a process of this host that no
// longer exists (killed with -9, crashed): its lease need not run out
// before a restarted process takes over. Anything uncertain — another
// host, a live or unreadable pid — is not dead.
func holderDead(holder string) bool {
	parts := strings.Split(holder, "/")
	if len(parts) != 3 {
		return false
	}
	host, err := os.Hostname()
	if err != nil || parts[0] != host {
		return false
	}
	pid, err := strconv.Atoi(parts[1])
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
