package wal

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestSessionAttrsAndHosts: the attrs are read from the URL as libpq
// spells them, and a multi-host URL becomes one config per host, in order,
// none with pgconn's session check (which a walsender refuses).
func TestSessionAttrsAndHosts(t *testing.T) {
	for src, want := range map[string]string{
		"postgres://u@a:5432,b:5433/postgres?target_session_attrs=primary":                 "primary",
		"postgres://u@a:5432,b:5433/postgres?sslmode=disable&target_session_attrs=standby": "standby",
		"host=a,b port=5432,5433 target_session_attrs=read-write sslmode=disable":          "read-write",
		"target_session_attrs=prefer-standby host=a":                                       "prefer-standby",
		"postgres://u@a/postgres": "any",
	} {
		t.Setenv("PGTARGETSESSIONATTRS", "")
		if got := sessionAttrs(src); got != want {
			t.Errorf("sessionAttrs(%q) = %q, want %q", src, got, want)
		}
	}
	cfg, err := pgconn.ParseConfig("postgres://u@a:5432,b:5433/postgres?sslmode=prefer&target_session_attrs=primary")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ValidateConnect == nil {
		t.Fatal("pgconn no longer checks target_session_attrs: the reason for Resolve is gone, revisit it")
	}
	hosts := splitHosts(cfg)
	if len(hosts) != 2 || hosts[0].Host != "a" || hosts[0].Port != 5432 || hosts[1].Host != "b" || hosts[1].Port != 5433 {
		t.Fatalf("hosts: %+v", hosts)
	}
	for _, h := range hosts {
		if h.ValidateConnect != nil {
			t.Fatalf("%s keeps the session check", h.Host)
		}
		// sslmode=prefer: TLS first, then plain, both on the same host.
		if h.TLSConfig == nil || len(h.Fallbacks) != 1 || h.Fallbacks[0].Host != h.Host || h.Fallbacks[0].TLSConfig != nil {
			t.Fatalf("%s: TLS fallbacks %+v", h.Host, h.Fallbacks)
		}
	}
	s := &Server{cfg: hosts[1]}
	r := s.Replication("tidemark")
	if r.RuntimeParams["replication"] != "true" || r.RuntimeParams["application_name"] != "tidemark" || r.Host != "b" {
		t.Fatalf("replication config: %s %v", r.Host, r.RuntimeParams)
	}
	if _, ok := s.Ordinary().RuntimeParams["replication"]; ok {
		t.Fatal("the ordinary config became a replication one")
	}
}

func TestSameBytes(t *testing.T) {
	data := bytes.Repeat([]byte("wal"), 50000)
	for _, c := range []struct {
		stored []byte
		want   bool
	}{
		{data, true},
		{data[:len(data)-1], false},
		{append(append([]byte{}, data...), 0), false},
		{append([]byte("x"), data[1:]...), false},
		{nil, false},
	} {
		if got, err := sameBytes(bytes.NewReader(c.stored), data); got != c.want || err != nil {
			t.Errorf("stored %d bytes: %v %v, want %v", len(c.stored), got, err, c.want)
		}
	}
	if got, _ := sameBytes(bytes.NewReader(nil), nil); !got {
		t.Error("empty vs empty")
	}
}

// TestSecondWriterOfSameWAL: two writers reaching one segment (a backup
// archiving its range while a streamer starts) both succeed when the
// bytes agree; other bytes under that name are refused.
func TestSecondWriterOfSameWAL(t *testing.T) {
	ctx := context.Background()
	w := writer{repo: testenv.NewRepo(t).Repository, g: Geometry{SegSize: 1 << 20}}
	seg := bytes.Repeat([]byte{7}, 1<<20)
	for i := 0; i < 2; i++ {
		if err := w.putPart(ctx, 1, 3, 0, 4096, seg[:4096]); err != nil {
			t.Fatalf("part, write %d: %v", i+1, err)
		}
		if err := w.putSegment(ctx, 1, 3, seg); err != nil {
			t.Fatalf("segment, write %d: %v", i+1, err)
		}
	}
	other := append([]byte{8}, seg[1:]...)
	if err := w.putSegment(ctx, 1, 3, other); !errors.Is(err, archive.ErrExist) || !strings.Contains(err.Error(), "other bytes") {
		t.Fatalf("other bytes under an archived name: %v", err)
	}

	// A backup host holds only the recipients: it cannot read the segment
	// back, keeps it and says so (before, the backup failed "taken but not
	// restorable" when its own archiving met the streamer's).
	r := testenv.NewRepo(t)
	pub, err := archive.Open(ctx, r.Store(), archive.Keys{})
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	first := writer{repo: r.Repository, g: w.g}
	second := writer{repo: pub, g: w.g, log: slog.New(slog.NewTextHandler(&logged, nil))}
	if err := first.putSegment(ctx, 1, 3, seg); err != nil {
		t.Fatal(err)
	}
	if err := second.putSegment(ctx, 1, 3, seg); err != nil {
		t.Fatalf("second writer without the identity: %v", err)
	}
	if !strings.Contains(logged.String(), "cannot be compared") || !strings.Contains(logged.String(), "000000010000000000000003") {
		t.Fatalf("nothing said of the segment kept unread: %q", logged.String())
	}
}
