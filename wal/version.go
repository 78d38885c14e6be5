package wal

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tidemark/tidemark/archive"
)

// The one place that knows what differs between the PostgreSQL majors
// tidemark supports; the stream, the backup and the restore ask a Version
// instead of comparing numbers themselves.

// Supported majors.
const (
	MinMajor = 13 // backup manifests arrived in 13
	MaxMajor = 18
)

// ErrUnsupportedVersion: a server of a major tidemark does not support.
var ErrUnsupportedVersion = archive.Class(archive.ErrMisconfigured, "unsupported PostgreSQL version")

// Version is a server's version as server_version reports it ("17.10").
type Version struct {
	Major, Minor int
}

// ParseVersion parses server_version: "15.18", "18.4", "17beta1",
// "16.2 (Debian 16.2-1)".
func ParseVersion(s string) (Version, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	major, err := strconv.Atoi(s[:i])
	if err != nil {
		return Version{}, fmt.Errorf("server_version %q: not a PostgreSQL version", s)
	}
	v := Version{Major: major}
	if rest, ok := strings.CutPrefix(s[i:], "."); ok {
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		v.Minor, _ = strconv.Atoi(rest[:j])
	}
	return v, nil
}

// ConnVersion is the version of the server conn is connected to.
func ConnVersion(conn *pgconn.PgConn) (Version, error) {
	return ParseVersion(conn.ParameterStatus("server_version"))
}

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Check refuses majors tidemark does not support, saying which it does.
func (v Version) Check() error {
	if v.Major < MinMajor || v.Major > MaxMajor {
		return fmt.Errorf("%w: PostgreSQL %s; tidemark supports PostgreSQL %d to %d", ErrUnsupportedVersion, v, MinMajor, MaxMajor)
	}
	return nil
}

// HasReadReplicationSlot: the replication command arrived in 15; before,
// a slot is read from pg_replication_slots over an ordinary connection.
func (v Version) HasReadReplicationSlot() bool { return v.Major >= 15 }

// NewBaseBackup: from 15, BASE_BACKUP takes a parenthesised option list
// and sends the whole backup as one COPY of typed messages; before, bare
// keywords (FAST, NOWAIT) and one COPY per tablespace, then the manifest's.
func (v Version) NewBaseBackup() bool { return v.Major >= 15 }

// HasIncremental: BASE_BACKUP (INCREMENTAL) after UPLOAD_MANIFEST, from
// WAL summaries (summarize_wal = on), arrived in 17.
func (v Version) HasIncremental() bool { return v.Major >= 17 }

// Slot is a replication slot as the server reports it.
type Slot struct {
	Exists     bool
	Type       string // physical, logical
	RestartLSN LSN    // 0 when the slot holds no WAL yet
}

// ReadSlot reads a slot: READ_REPLICATION_SLOT on the replication
// connection from 15, pg_replication_slots over an ordinary connection to
// source before (13 and 14 refuse SQL on a physical walsender).
func ReadSlot(ctx context.Context, conn *pgconn.PgConn, v Version, server *Server, slot string) (Slot, error) {
	var row [][]byte
	if v.HasReadReplicationSlot() {
		res, err := conn.Exec(ctx, "READ_REPLICATION_SLOT "+slot).ReadAll()
		if err != nil {
			return Slot{}, fmt.Errorf("READ_REPLICATION_SLOT %s: %w", slot, err)
		}
		if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) < 2 {
			return Slot{}, fmt.Errorf("READ_REPLICATION_SLOT %s: unexpected result", slot)
		}
		row = res[0].Rows[0]
	} else {
		var err error
		if row, err = readSlotSQL(ctx, server, slot); err != nil {
			return Slot{}, err
		}
	}
	if row == nil || row[0] == nil {
		return Slot{}, nil
	}
	s := Slot{Exists: true, Type: string(row[0])}
	if row[1] != nil {
		lsn, err := pglogrepl.ParseLSN(string(row[1]))
		if err != nil {
			return Slot{}, fmt.Errorf("slot %s: restart_lsn %q: %w", slot, row[1], err)
		}
		s.RestartLSN = lsn
	}
	return s, nil
}

// readSlotSQL returns the slot's (type, restart_lsn), or nil when it does
// not exist.
func readSlotSQL(ctx context.Context, server *Server, slot string) ([][]byte, error) {
	conn, err := pgconn.ConnectConfig(ctx, server.Ordinary())
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL before 15 has no READ_REPLICATION_SLOT: tidemark reads slot %s from pg_replication_slots over an ordinary connection, which failed "+
			"(let the role connect to the URL's database in pg_hba.conf): %w", slot, err)
	}
	defer conn.Close(context.Background())
	res := conn.ExecParams(ctx, "SELECT slot_type, restart_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
		[][]byte{[]byte(slot)}, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, fmt.Errorf("read slot %s from pg_replication_slots: %w", slot, res.Err)
	}
	if len(res.Rows) == 0 {
		return nil, nil
	}
	return res.Rows[0], nil
}
