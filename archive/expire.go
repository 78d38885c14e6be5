package archive

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ExpireOptions configure Repository.Expire.
type ExpireOptions struct {
	DryRun bool
	// TrimStreams deletes the stream data (WAL, binlog, oplog) that no kept
	// backup needs, given the oldest kept backup per engine. The engines
	// know their positions; the archive does not.
	TrimStreams func(ctx context.Context, oldest map[string]BackupSummary, dryRun bool) (Trimmed, error)
}

// Trimmed counts what was (or, in a dry run, would be) deleted.
type Trimmed struct {
	Objects int64
	Bytes   int64
	Detail  []string // one line per stream, for the report
}

// ExpireResult reports an expire run.
type ExpireResult struct {
	Decisions []Decision
	Expired   []BackupSummary
	// Orphans: refs and catalog entries of backups that never committed,
	// and records of operations whose process died (Operation.Stale).
	Orphans int
	Streams Trimmed
	Chunks  Trimmed
	// TempFiles are the store's temporary files of writes whose writer was
	// killed (untouched for TempFileAge), removed.
	TempFiles Trimmed
	DryRun    bool
}

// Expire applies p: it deletes the backups p does not keep, the stream data
// only they needed and the chunks no kept backup references. The caller
// holds the "maintenance" lock, so no backup is half-written meanwhile.
//
// Safe to interrupt at any point: a backup is uncommitted first (its
// manifest goes before its refs and catalog entry); streams are trimmed
// from their oldest end, so what remains is contiguous; chunk indexes are
// rewritten without the doomed chunks before any chunk is deleted, so no
// later backup can deduplicate against a chunk that is gone.
func (r *Repository) Expire(ctx context.Context, p Policy, now time.Time, o ExpireOptions) (*ExpireResult, error) {
	if p.Empty() {
		return nil, errors.New("expire: the retention policy keeps nothing but the newest backup; set at least one rule")
	}
	backups, err := r.Backups(ctx)
	if err != nil {
		return nil, fmt.Errorf("expire: %w", err)
	}
	res := &ExpireResult{Decisions: p.Apply(backups, now), DryRun: o.DryRun}
	kept := map[string]bool{}
	oldest := map[string]BackupSummary{}
	for _, d := range res.Decisions {
		if !d.Keep {
			res.Expired = append(res.Expired, d.Backup)
			continue
		}
		kept[d.Backup.ID] = true
		if cur, ok := oldest[d.Backup.Engine]; !ok || d.Backup.Finished.Before(cur.Finished) {
			oldest[d.Backup.Engine] = d.Backup
		}
	}
	expired := map[string]bool{}
	for _, b := range res.Expired {
		expired[b.ID] = true
		if err := r.deleteBackup(ctx, b.ID, o.DryRun); err != nil {
			return res, err
		}
	}
	if res.Orphans, err = r.deleteOrphans(ctx, kept, expired, o.DryRun); err != nil {
		return res, err
	}
	abandoned, err := r.deleteAbandonedOperations(ctx, now, o.DryRun)
	res.Orphans += abandoned
	if err != nil {
		return res, err
	}
	if o.TrimStreams != nil && len(oldest) > 0 {
		if res.Streams, err = o.TrimStreams(ctx, oldest, o.DryRun); err != nil {
			return res, fmt.Errorf("expire: trim streams: %w", err)
		}
	}
	ids := make([]string, 0, len(kept))
	for id := range kept {
		ids = append(ids, id)
	}
	if res.Chunks, err = r.pruneChunks(ctx, ids, o.DryRun); err != nil {
		return res, err
	}
	if res.TempFiles, err = r.deleteTempFiles(ctx, now, o.DryRun); err != nil {
		return res, err
	}
	return res, nil
}

func (r *Repository) deleteBackup(ctx context.Context, id string, dryRun bool) error {
	if dryRun {
		return nil
	}
	for _, name := range []string{manifestPrefix + id, refsPrefix + id, catalogPrefix + id} {
		if err := r.store.Delete(ctx, name); err != nil && !errors.Is(err, ErrNotExist) {
			return fmt.Errorf("expire backup %s: delete %s: %w", id, name, err)
		}
	}
	return nil
}

// deleteOrphans removes refs and catalog entries left by backups that
// crashed before their manifest, or by an expire that was interrupted.
// Those of the backups this run expires are not orphans: deleteBackup
// deleted them (a dry run counts them with the backups, not here, so it
// reports what the real run does).
func (r *Repository) deleteOrphans(ctx context.Context, kept, expired map[string]bool, dryRun bool) (int, error) {
	var orphans []string
	for _, prefix := range []string{refsPrefix, catalogPrefix} {
		if err := r.store.List(ctx, prefix, "", func(o ObjectInfo) error {
			if id := strings.TrimPrefix(o.Name, prefix); !kept[id] && !expired[id] {
				orphans = append(orphans, o.Name)
			}
			return nil
		}); err != nil {
			return 0, fmt.Errorf("expire: list %s: %w", prefix, err)
		}
	}
	if dryRun {
		return len(orphans), nil
	}
	for _, name := range orphans {
		if err := r.store.Delete(ctx, name); err != nil && !errors.Is(err, ErrNotExist) {
			return 0, fmt.Errorf("expire: delete %s: %w", name, err)
		}
	}
	return len(orphans), nil
}

// pruneChunks deletes every chunk the kept backups do not reference.
func (r *Repository) pruneChunks(ctx context.Context, keptIDs []string, dryRun bool) (Trimmed, error) {
	var t Trimmed
	refs, err := r.ReferencedChunks(ctx, keptIDs)
	if err != nil {
		return t, fmt.Errorf("expire: %w", err)
	}
	if r.cfg.Version != 1 {
		return r.prunePacks(ctx, refs, dryRun)
	}
	var doomed []string
	if err := r.store.List(ctx, "chunks/", "", func(o ObjectInfo) error {
		id, err := ParseChunkID(o.Name[strings.LastIndexByte(o.Name, '/')+1:])
		if err != nil {
			return fmt.Errorf("unexpected object %s among chunks: %w", o.Name, ErrCorrupt)
		}
		if _, ok := refs[id]; !ok {
			doomed = append(doomed, o.Name)
			t.Objects++
			t.Bytes += o.Size
		}
		return nil
	}); err != nil {
		return t, fmt.Errorf("expire: list chunks: %w", err)
	}
	if dryRun || len(doomed) == 0 {
		return t, nil
	}
	if err := r.rewriteChunkIndex(ctx, refs); err != nil {
		return t, err
	}
	for _, name := range doomed {
		if err := r.store.Delete(ctx, name); err != nil && !errors.Is(err, ErrNotExist) {
			return t, fmt.Errorf("expire: delete %s: %w", name, err)
		}
	}
	return t, nil
}

// rewriteChunkIndex replaces all chunk indexes by one that lists only the
// chunks in keep: written first, old ones deleted after, so at every moment
// the indexes list no chunk that is already gone.
func (r *Repository) rewriteChunkIndex(ctx context.Context, keep map[ChunkID]struct{}) error {
	idx, err := r.loadChunkIndex(ctx)
	if err != nil {
		return fmt.Errorf("expire: %w", err)
	}
	var entries []indexEntry
	for id, e := range idx {
		if _, ok := keep[id]; ok {
			entries = append(entries, e)
		}
	}
	return r.replaceChunkIndex(ctx, entries)
}

// StreamSkew is how far before a backup's start the stream it pairs with
// is kept by TrimBefore: segments carry the server's event times, a
// backup the Tidemark host's clock, and the two may disagree a little.
const StreamSkew = time.Hour

// TrimBefore trims the stream a backup pairs with to what a restore of
// that backup (or a later one) needs: segments that ended StreamSkew
// before the backup started go. Backups that name no stream keep theirs
// elsewhere (PostgreSQL's WAL) and trim nothing here.
func (r *Repository) TrimBefore(ctx context.Context, b BackupSummary, dryRun bool) (Trimmed, error) {
	if b.Stream == "" {
		return Trimmed{}, nil
	}
	before := b.Started.Add(-StreamSkew)
	t, err := r.TrimStream(ctx, b.Stream, before, dryRun)
	if t.Objects > 0 {
		t.Detail = append(t.Detail, fmt.Sprintf("%s before %s: %d objects", b.Stream, before.UTC().Format(time.RFC3339), t.Objects))
	}
	return t, err
}

// TrimStream deletes a stream's segments, oldest first, while they end
// before keepFrom (event time). It stops at the first segment it must keep,
// so what remains is a contiguous tail.
func (r *Repository) TrimStream(ctx context.Context, stream string, keepFrom time.Time, dryRun bool) (Trimmed, error) {
	var t Trimmed
	chain, err := r.ReadStream(ctx, stream)
	if err != nil {
		return t, err
	}
	for _, s := range chain.Segments {
		if !s.LastTime.Before(keepFrom) {
			break
		}
		t.Objects += 2
		t.Bytes += s.Bytes
		if !dryRun {
			if err := r.deleteSegment(ctx, s); err != nil {
				return t, err
			}
		}
	}
	return t, nil
}
