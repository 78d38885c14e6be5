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
	return len(parts) == 3 && processDead(parts[0], parts[1])
}

// processDead reports that process pid of host is of this host and no
// longer exists. Anything uncertain — another host, a live or unreadable
// pid, this very process — is not dead.
func processDead(host, pid string) bool {
	this, err := os.Hostname()
	if err != nil || host != this {
		return false
	}
	n, err := strconv.Atoi(pid)
	if err != nil || n <= 0 || n == os.Getpid() {
		return false
	}
	return errors.Is(syscall.Kill(n, 0), syscall.ESRCH)
}
