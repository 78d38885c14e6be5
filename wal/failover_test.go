package wal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestFailoverPastTheArchiveIsAGap: the streamer stopped on the old
// primary; meanwhile the standby replayed more, was promoted when the
// primary died, and recycled the WAL the archive needs next. Following the
// multi-host source to it, the streamer records a gap and stops (exit 6
// in the CLI) instead of reconnecting forever.
func TestFailoverPastTheArchiveIsAGap(t *testing.T) {
	ctx := context.Background()
	primary := testenv.NewPostgreSQL(t, testenv.PostgresOptions{Major: 15, Conf: pgConf})
	standby := testenv.NewStandby(t, primary, "wal_keep_size=0", "min_wal_size=32MB", "max_wal_size=64MB", "checkpoint_timeout=1h")
	f := &fixture{t: t, pg: primary, g: Geometry{SegSize: 16 << 20}}
	r := testenv.NewRepo(t)
	f.dir, f.identity, f.repo = r.Dir, r.Identity, r.Repository
	cfg := f.config()
	cfg.Source = fmt.Sprintf("postgres://postgres@%s:%d,%s:%d/postgres?sslmode=disable&target_session_attrs=primary",
		standby.Host, standby.Port, primary.Host, primary.Port)

	pc := f.conn()
	stop := f.stream(cfg)
	f.load(pc, 2)
	f.waitArchived(f.currentLSN(pc))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	f.load(pc, 40) // WAL the archive does not have
	end := f.currentLSN(pc)
	sc, err := pgx.Connect(ctx, standby.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close(ctx)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		var ok bool
		if err := sc.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", end.String()).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby did not replay up to %s", end)
		}
	}
	primary.Kill()
	var promoted bool
	if err := sc.QueryRow(ctx, "SELECT pg_promote(true, 60)").Scan(&promoted); err != nil || !promoted {
		t.Fatalf("promote: %v %v", promoted, err)
	}
	// No slot and wal_keep_size 0 on the new primary: checkpoints recycle
	// the old timeline's segments.
	for i := 0; i < 4; i++ {
		if _, err := sc.Exec(ctx, "SELECT pg_switch_wal(); CHECKPOINT"); err != nil {
			t.Fatal(err)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err = Stream(sctx, cfg)
	if !errors.Is(err, ErrGap) || !errors.Is(err, archive.ErrGap) || sctx.Err() != nil {
		t.Fatalf("stream after a failover past the archive: %v", err)
	}
	gaps, err := f.repo.Gaps(ctx)
	if err != nil || len(gaps) != 1 || !strings.Contains(gaps[0].From, "timeline 1") {
		t.Fatalf("recorded gaps: %+v, %v", gaps, err)
	}
}
