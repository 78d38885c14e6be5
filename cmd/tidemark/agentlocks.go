package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/tidemark/tidemark/agent"
	"github.com/tidemark/tidemark/archive"
)

// agentLocks holds the "agent" lock of every repository the running config
// names, so a second agent on the same repository is refused at start
// instead of fighting the first one job by job.
type agentLocks struct {
	a    *app
	held map[string]*archive.Lock // by repository URL
	lost chan error               // a lease taken over: the agent must stop

	mu sync.Mutex
}

func newAgentLocks(a *app) *agentLocks {
	return &agentLocks{a: a, held: map[string]*archive.Lock{}, lost: make(chan error, 1)}
}

// hold acquires the locks cfg needs and releases those it no longer names.
// On error nothing new is held.
func (l *agentLocks) hold(ctx context.Context, cfg *agent.Config) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	want := map[string]agent.Database{}
	for _, db := range cfg.Databases {
		want[db.Repo] = db
	}
	var acquired []string
	for url, db := range want {
		if l.held[url] != nil {
			continue
		}
		repo, err := dbRepoFlags(db).open(ctx, false)
		if err == nil {
			var lock *archive.Lock
			var lctx context.Context
			lock, lctx, err = repo.AcquireLock(ctx, "agent", archive.LockOptions{Purpose: "tidemark agent for " + db.Name})
			if err == nil {
				l.held[url] = lock
				acquired = append(acquired, url)
				go l.watch(ctx, lctx, db.Name)
				continue
			}
		}
		for _, u := range acquired {
			l.releaseLocked(u)
		}
		return fmt.Errorf("agent: database %s: %w", db.Name, err)
	}
	for url := range l.held {
		if _, ok := want[url]; !ok {
			l.releaseLocked(url)
		}
	}
	return nil
}

// watch reports a lease lost while the agent still runs.
func (l *agentLocks) watch(agentCtx, lockCtx context.Context, name string) {
	<-lockCtx.Done()
	if agentCtx.Err() != nil {
		return
	}
	if cause := context.Cause(lockCtx); cause != nil && cause != context.Canceled {
		select {
		case l.lost <- fmt.Errorf("agent: database %s: %w", name, cause):
		default:
		}
	}
}

func (l *agentLocks) releaseLocked(url string) {
	if lock := l.held[url]; lock != nil {
		// Unlock cancels the lease context with context.Canceled: watch
		// takes that as a release, not a loss.
		if err := lock.Unlock(context.Background()); err != nil {
			l.a.log.Warn("release agent lock", "repo", url, "err", err)
		}
		delete(l.held, url)
	}
}

func (l *agentLocks) releaseAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for url := range l.held {
		l.releaseLocked(url)
	}
}
