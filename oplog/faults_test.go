package oplog

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestNoOplogStopsAtOnce: a FerretDB that reports a replica set but has
// no local.oplog.rs cannot be archived: the streamer stops at once naming
// the fix, instead of tailing nothing or reconnecting forever.
func TestNoOplogStopsAtOnce(t *testing.T) {
	f := testenv.NewFerretDB(t)
	x := newFixture(t, f)
	if err := x.c.Database("local").Collection("oplog.rs").Drop(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Stream(ctx, x.config())
	if !errors.Is(err, archive.ErrMisconfigured) || !strings.Contains(err.Error(), "createCollection(\"oplog.rs\"") || ctx.Err() != nil {
		t.Fatalf("stream from a server without an oplog: %v", err)
	}
}

// TestBackupBeforeCatalogStopsAtOnce: a new stream starts at the newest
// base's start; when that base predates the catalog only its encrypted
// manifest says where, which a streamer (no key) cannot read. That is
// permanent: it stops at once naming the fix, where it used to retry
// forever.
func TestBackupBeforeCatalogStopsAtOnce(t *testing.T) {
	f := testenv.FerretDBServer(t)
	x := newFixture(t, f)
	ctx := context.Background()
	m := &archive.Manifest{ID: archive.NewManifestID(time.Now()), Engine: Engine, Type: "full", Start: "1796046373:2", Stop: "1796046373:2",
		Stream: "oplog/rs0", Started: time.Now(), Finished: time.Now()}
	if err := x.repo.CommitManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := x.repo.Store().Delete(ctx, "catalog/"+m.ID); err != nil {
		t.Fatal(err)
	}
	streamer, err := archive.Open(ctx, x.repo.Store(), archive.Keys{}) // a stream holds no key
	if err != nil {
		t.Fatal(err)
	}
	cfg := x.config()
	cfg.Repo = streamer
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = Stream(tctx, cfg)
	if !errors.Is(err, archive.ErrNoIdentity) || !strings.Contains(err.Error(), "verify --repair") || tctx.Err() != nil {
		t.Fatalf("stream after a backup that predates the catalog: %v", err)
	}
}
