package archive

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Long work — a backup, a restore, a verify, a drill — records that it
// runs and how far it got, so that status and the agent on any host can
// show running operations (as pgBackRest's info and pbm status do), and an
// operation whose process died shows as abandoned rather than vanishing:
//
//	operations/<id>/<unixnano 016x>
//
// JSON, unencrypted (no user data: a kind, times, counts, the source's
// address without its password). Write-once like everything else: each
// update is a new object and the older ones of that id are deleted after
// it; the operation deletes its records when it ends.
const operationPrefix = "operations/"

// OperationVersion is the version of the operation record's JSON.
const OperationVersion = 1

// Operation is one running operation and its progress.
type Operation struct {
	Version int       `json:"version"`
	ID      string    `json:"id"`
	Kind    string    `json:"kind"` // backup, restore, verify, drill
	Engine  string    `json:"engine,omitempty"`
	Holder  string    `json:"holder"`            // host/pid
	Subject string    `json:"subject,omitempty"` // the source or target, without a password
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	// Interval is how often a running operation rewrites its record: one
	// much older than that died (or cannot write here).
	Interval float64 `json:"interval_seconds"`
	Phase    string  `json:"phase,omitempty"`
	Unit     string  `json:"unit,omitempty"`
	Done     int64   `json:"done"`
	Total    int64   `json:"total,omitempty"` // 0: unknown
}

// Stale reports whether the operation's record is overdue by three
// intervals: its process died or cannot write to the repository.
func (o Operation) Stale(now time.Time) bool {
	return now.Sub(o.Updated) > 3*time.Duration(o.Interval*float64(time.Second))
}

// Abandoned reports whether the operation's process is gone: its record is
// overdue (Stale), or its holder is a process of this host that no longer
// exists (killed with -9).
func (o Operation) Abandoned(now time.Time) bool {
	host, pid, ok := strings.Cut(o.Holder, "/")
	return o.Stale(now) || ok && processDead(host, pid)
}

// PutOperation records o's newest state and deletes its older records.
func (r *Repository) PutOperation(ctx context.Context, o Operation) error {
	if o.ID == "" || strings.ContainsAny(o.ID, "/.") {
		return fmt.Errorf("operation: bad id %q", o.ID)
	}
	o.Version = OperationVersion
	if err := r.putRecord(ctx, operationPrefix, o.ID, o.Updated, KindOperation, o); err != nil {
		return fmt.Errorf("record operation %s: %w", o.ID, err)
	}
	return nil
}

// EndOperation deletes every record of operation id.
func (r *Repository) EndOperation(ctx context.Context, id string) error {
	names, err := r.listNames(ctx, operationPrefix+id+"/")
	if err != nil {
		return fmt.Errorf("list records of operation %s: %w", id, err)
	}
	for _, n := range names {
		if err := r.store.Delete(ctx, n); err != nil && !errors.Is(err, ErrNotExist) {
			return fmt.Errorf("delete record of operation %s: %w", id, err)
		}
	}
	return nil
}

// Operations returns the newest record of every operation on record,
// oldest first. One that does not read back is returned with its problem
// as its Phase and kind "unknown", never silently dropped.
func (r *Repository) Operations(ctx context.Context) ([]Operation, error) {
	return newestRecords(ctx, r, operationPrefix, KindOperation, OperationVersion, func(o Operation) int { return o.Version },
		func(id string, o ObjectInfo, err error) Operation {
			return Operation{ID: id, Kind: "unknown", Updated: o.ModTime, Phase: err.Error()}
		})
}

func (r *Repository) listNames(ctx context.Context, prefix string) ([]string, error) {
	var names []string
	err := r.store.List(ctx, prefix, "", func(o ObjectInfo) error {
		names = append(names, o.Name)
		return nil
	})
	return names, err
}

// abandonedOperations are the operations whose records stopped being
// renewed: their process died.
func (r *Repository) abandonedOperations(ctx context.Context, now time.Time) ([]Operation, error) {
	ops, err := r.Operations(ctx)
	if err != nil {
		return nil, err
	}
	var out []Operation
	for _, o := range ops {
		if o.Abandoned(now) {
			out = append(out, o)
		}
	}
	return out, nil
}

// deleteAbandonedOperations deletes the records of operations whose
// process died and returns how many operations they were.
func (r *Repository) deleteAbandonedOperations(ctx context.Context, now time.Time, dryRun bool) (int, error) {
	ops, err := r.abandonedOperations(ctx, now)
	if err != nil || dryRun {
		return len(ops), err
	}
	for _, o := range ops {
		if err := r.EndOperation(ctx, o.ID); err != nil {
			return 0, err
		}
	}
	return len(ops), nil
}
