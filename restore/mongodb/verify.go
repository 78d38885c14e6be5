package mongodb

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/oplog"
	"github.com/tidemark/tidemark/restore"
)

// VerifyOplog checks, for a MongoDB repository, that every base can
// be restored (the oplog over its window is archived and continuous) and
// that the newest reaches the end of the archive; with the key it also
// decodes every archived entry. It returns problems, not errors, for what it finds.
func VerifyOplog(ctx context.Context, repo *archive.Repository) ([]string, error) {
	src, err := repo.Source(ctx)
	if errors.Is(err, archive.ErrNotExist) {
		return nil, nil
	}
	if err != nil || src.Engine != oplog.Engine {
		return nil, err
	}
	chain, err := repo.ReadStream(ctx, oplog.StreamName(src.Details["set_name"]))
	if err != nil {
		return nil, err
	}
	var problems []string
	spans, err := oplog.Spans(chain)
	if err != nil {
		return append(problems, err.Error()), nil
	}
	bases, err := restore.Bases(ctx, repo, oplog.Engine)
	if err != nil {
		return nil, err
	}
	var newest *archive.BackupSummary
	for _, b := range bases {
		start, err1 := oplog.ParseTS(b.Start)
		stop, err2 := oplog.ParseTS(b.Stop)
		if err1 != nil || err2 != nil {
			problems = append(problems, fmt.Sprintf("backup %s: unreadable positions %q – %q", b.ID, b.Start, b.Stop))
			continue
		}
		if _, err := oplog.Range(chain, start, stop); err != nil {
			problems = append(problems, fmt.Sprintf("backup %s cannot be restored: its oplog window %s – %s: %v", b.ID, start, stop, err))
			continue
		}
		newest = &b
	}
	// Breaks before the newest base only end older bases' reach (status
	// shows them); the newest must reach the archive's end, or no restore
	// can reach the latest archived point.
	if newest != nil && len(spans) > 0 {
		start, _ := oplog.ParseTS(newest.Start)
		if _, err := oplog.Range(chain, start, spans[len(spans)-1].End); err != nil {
			problems = append(problems, fmt.Sprintf("the newest backup %s does not reach the end of the archived oplog: %v", newest.ID, err))
		}
	}
	if repo.CanRead() {
		for _, s := range chain.Segments {
			if err := decodeSegment(ctx, repo, s); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	return problems, nil
}

// decodeSegment reads every entry of a segment and checks they lie in
// its range (late FerretDB entries may lie before it, never after).
func decodeSegment(ctx context.Context, repo *archive.Repository, s archive.SegmentInfo) error {
	end, err := oplog.ParseTS(s.End)
	if err != nil {
		return fmt.Errorf("segment %s %d-%d: end %q: %w", s.Stream, s.First, s.Last, s.End, archive.ErrCorrupt)
	}
	rc, err := repo.OpenSegment(ctx, s)
	if err != nil {
		return err
	}
	defer rc.Close()
	r := oplog.NewSegmentReader(rc)
	var n int64
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("segment %s %d-%d: %w", s.Stream, s.First, s.Last, err)
		}
		if end.Less(e.TS) {
			return fmt.Errorf("segment %s %d-%d: entry %s after its end %s", s.Stream, s.First, s.Last, e.TS, end)
		}
		n++
	}
	if n != s.Events {
		return fmt.Errorf("segment %s %d-%d: %d entries, its index says %d", s.Stream, s.First, s.Last, n, s.Events)
	}
	return nil
}
