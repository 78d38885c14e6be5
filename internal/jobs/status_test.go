package jobs_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/archive/store/file"
	"github.com/tidemark/tidemark/internal/engine/all"
	"github.com/tidemark/tidemark/internal/jobs"
)

// TestStatusShowsRunningOperations: while a verify runs, status (from
// another process's point of view: the repository alone) lists it with its
// progress; when it ends, it is gone; an operation whose process died
// shows as abandoned.
func TestStatusShowsRunningOperations(t *testing.T) {
	ctx := context.Background()
	s, err := file.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	repo, err := archive.Init(ctx, s, archive.InitOptions{NoEncrypt: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := repo.Put(ctx, "blobs/"+string(rune('a'+i)), archive.KindBlob, strings.NewReader(strings.Repeat("x", 1000))); err != nil {
			t.Fatal(err)
		}
	}
	reg := all.Registry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var during *jobs.StatusReport
	_, _, err = jobs.Verify(ctx, reg, repo, log, func(objects, _ int64) {
		if during == nil && objects >= 2 {
			if during, err = jobs.Status(ctx, reg, repo, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if during == nil || len(during.Operations) != 1 {
		t.Fatalf("status during verify: %+v", during)
	}
	op := during.Operations[0]
	if op.Kind != "verify" || op.Abandoned || op.Phase != "" && op.Phase != "verify" || !strings.Contains(op.Summary, "verify by ") {
		t.Fatalf("operation during verify: %+v", op)
	}
	after, err := jobs.Status(ctx, reg, repo, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Operations) != 0 {
		t.Fatalf("operations after verify ended: %+v", after.Operations)
	}

	old := time.Now().Add(-time.Hour)
	if err := repo.PutOperation(ctx, archive.Operation{ID: "killed", Kind: "backup", Engine: "postgres", Holder: "db1/42",
		Subject: "postgres://u@db1/postgres", Started: old, Updated: old, Interval: 10, Phase: "backup", Unit: "bytes", Done: 1 << 20, Total: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	st, err := jobs.Status(ctx, reg, repo, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Operations) != 1 || !st.Operations[0].Abandoned || st.Operations[0].Percent != 25 ||
		!strings.Contains(st.Operations[0].Summary, "ABANDONED") || !strings.Contains(st.Operations[0].Summary, "1.0 MiB of 4.0 MiB (25%)") {
		t.Fatalf("a killed backup's record: %+v", st.Operations)
	}
}
