package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/jobs"
)

// repoLocks holds the "agent" lock of every repository the running config
// names, so a second agent on the same repository is refused at start
// instead of fighting the first one job by job.
type repoLocks struct {
	log  *slog.Logger
	held map[string]*archive.Lock // by repository URL
	lost chan error               // a lease taken over: the agent must stop

	mu sync.Mutex
}

func newRepoLocks(log *slog.Logger) *repoLocks {
	return &repoLocks{log: log, held: map[string]*archive.Lock{}, lost: make(chan error, 1)}
}

// hold acquires the locks cfg needs and releases those it no longer names.
// On error nothing new is held.
func (l *repoLocks) hold(ctx context.Context, cfg *Config) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	want := map[string]Database{}
	for _, db := range cfg.Databases {
		want[db.Repo] = db
	}
	var acquired []string
	for url, db := range want {
		if l.held[url] != nil {
			continue
		}
		repo, err := jobs.OpenRepo(ctx, engine.RepoRef{URL: db.Repo, IdentityFile: db.IdentityFile, PassphraseFile: db.PassphraseFile}, false, l.log.With("database", db.Name))
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
func (l *repoLocks) watch(agentCtx, lockCtx context.Context, name string) {
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

func (l *repoLocks) releaseLocked(url string) {
	if lock := l.held[url]; lock != nil {
		// Unlock cancels the lease context with context.Canceled: watch
		// takes that as a release, not a loss.
		if err := lock.Unlock(context.Background()); err != nil {
			l.log.Warn("release agent lock", "repo", url, "err", err)
		}
		delete(l.held, url)
	}
}

func (l *repoLocks) releaseAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for url := range l.held {
		l.releaseLocked(url)
	}
}
