package restore

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// OSUser is the account a scratch or restored server runs as when Tidemark
// runs as root (a drill in the agent). nil means the current user.
type OSUser struct {
	Name     string
	UID, GID uint32
	// Groups are the user's supplementary groups: a repository shared
	// through a group must be readable in a check run as the user exactly
	// as by the server a service manager starts.
	Groups []uint32
}

// LookupOSUser resolves a user name.
func LookupOSUser(name string) (*OSUser, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("run as %q: %w", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("run as %q: non-numeric uid/gid", name)
	}
	as := &OSUser{Name: name, UID: uint32(uid), GID: uint32(gid)}
	gids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("run as %q: groups: %w", name, err)
	}
	for _, g := range gids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			as.Groups = append(as.Groups, uint32(n))
		}
	}
	return as, nil
}

// Command prepares a command that runs as u (as the current user for nil).
func (u *OSUser) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	if u != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}}
		cmd.Dir = "/" // the caller's working directory may be closed to u
	}
	return cmd
}

// Chown hands a tree to u (no-op for nil).
func (u *OSUser) Chown(root string) error {
	if u == nil {
		return nil
	}
	return filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(u.UID), int(u.GID))
	})
}
