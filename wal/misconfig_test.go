package wal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestMisconfiguredSourceStopsAtOnce: a server that cannot be streamed
// from as configured (wal_level = minimal, a role without REPLICATION)
// stops the streamer at once with the fix named, instead of reconnecting
// forever with the server's raw refusal.
func TestMisconfiguredSourceStopsAtOnce(t *testing.T) {
	minimal := testenv.NewPostgreSQL(t, testenv.PostgresOptions{Conf: []string{"wal_level=minimal", "max_wal_senders=0"}})
	shared := testenv.PostgreSQL(t)
	shared.Exec(t, "DO $$ BEGIN CREATE ROLE tidemark_norepl LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
	for _, c := range []struct {
		name, source, want string
	}{
		{"wal_level minimal", minimal.URL("postgres"), "set wal_level = replica"},
		{"no REPLICATION", fmt.Sprintf("postgres://tidemark_norepl@%s:%d/postgres?sslmode=disable", shared.Host, shared.Port), "ALTER ROLE tidemark_norepl REPLICATION"},
	} {
		t.Run(c.name, func(t *testing.T) {
			repo := testenv.NewRepo(t).Repository
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := Stream(ctx, Config{Repo: repo, Source: c.source, Slot: "tidemark", CreateSlot: true})
			if !errors.Is(err, archive.ErrMisconfigured) || !strings.Contains(err.Error(), c.want) || ctx.Err() != nil {
				t.Fatalf("stream: %v", err)
			}
		})
	}
}
