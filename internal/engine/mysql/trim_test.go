package mysql

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestTrimEveryServersStream: after a failover the oldest kept backup pairs
// with the promoted server's stream; expire still trims the old primary's
// stream, which ended long before it (before, that stream was kept forever).
func TestTrimEveryServersStream(t *testing.T) {
	ctx := context.Background()
	repo := testenv.NewRepo(t).Repository
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	write := func(stream, file string, at time.Time) {
		w, err := repo.OpenStream(ctx, stream, archive.StreamWriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w.Restart(file + ":4")
		for i := 0; i < 3; i++ {
			if err := w.Append(ctx, []byte(fmt.Sprintf("event-%d;", i)), archive.Position{Group: file,
				End: fmt.Sprintf("%s:%d", file, 100*(i+1)), Time: at.Add(time.Duration(i) * time.Second), Events: 1}); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	write("binlog/0000000001", "mysql-bin.000001", day)                                  // the old primary
	write("binlog/0000000002", "mysql-bin.000001", day.Add(49*time.Hour+30*time.Minute)) // the promoted replica
	oldest := archive.BackupSummary{Stream: "binlog/0000000002", Started: day.Add(50 * time.Hour)}

	dry, err := New().Trim(ctx, repo, oldest, true)
	if err != nil {
		t.Fatal(err)
	}
	got, err := New().Trim(ctx, repo, oldest, false)
	if err != nil {
		t.Fatal(err)
	}
	if got.Objects == 0 || got.Objects != dry.Objects {
		t.Fatalf("trimmed %d objects (dry run %d), want the old primary's segments", got.Objects, dry.Objects)
	}
	old, err := repo.ReadStream(ctx, "binlog/0000000001")
	if err != nil {
		t.Fatal(err)
	}
	kept, err := repo.ReadStream(ctx, "binlog/0000000002")
	if err != nil {
		t.Fatal(err)
	}
	if len(old.Segments) != 0 || len(kept.Segments) == 0 {
		t.Fatalf("after trim: old primary's stream %d segments (want 0), the promoted server's %d (want all)", len(old.Segments), len(kept.Segments))
	}
}
