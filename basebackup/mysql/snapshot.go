package mysql

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/tidemark/tidemark/binlog"
)

// snapshot is a consistent read view shared by every worker connection,
// with the binlog coordinates it is consistent with.
type snapshot struct {
	workers []*client.Conn
	file    string
	pos     uint32
	gtid    string
	// primaryGTID: on a replica, the GTID position of what it had applied
	// from its primary when the snapshot was taken.
	primaryGTID string
	taken       time.Time
	lockFrom    time.Time     // commits blocked since (BACKUP STAGE BLOCK_COMMIT)
	ddlFrom     time.Time     // DDL blocked since
	lockHeld    time.Duration // commits were blocked this long
	ddlBlocked  time.Duration // DDL was blocked this long
	released    bool
}

// release ends the backup stage: commits and DDL run again.
func (s *snapshot) release(coord *client.Conn) error {
	if s.released {
		return nil
	}
	s.released = true
	_, err := coord.Execute("BACKUP STAGE END")
	end := time.Now()
	s.lockHeld, s.ddlBlocked = end.Sub(s.lockFrom), end.Sub(s.ddlFrom)
	if err != nil {
		return fmt.Errorf("BACKUP STAGE END: %w", err)
	}
	return nil
}

func (s *snapshot) close() {
	for _, w := range s.workers {
		w.Close()
	}
}

// openSnapshot reads the schema and opens one snapshot per worker at one
// point of the binlog, and returns with the backup stage still held: the
// caller copies non-transactional tables and then releases it. MariaDB's START TRANSACTION WITH CONSISTENT SNAPSHOT
// reports the binlog position its read view matches (binlog_snapshot_*),
// per connection; to share that point across connections, commits are
// blocked (BACKUP STAGE BLOCK_COMMIT) only while the already connected
// workers open their snapshots — milliseconds. DDL is blocked from before
// the schema is read until then, so the definitions match the data. On a
// replica the applier is held by the same stage, and the position in the
// primary's history is read from the snapshot (appliedGTIDs).
func openSnapshot(ctx context.Context, cfg Config, srv binlog.Source, coord *client.Conn, id *binlog.Identity) (*snapshot, *Schema, error) {
	s := &snapshot{}
	for i := 0; i < cfg.Jobs; i++ {
		c, err := ConnectRaw(ctx, srv)
		if err != nil {
			s.close()
			return nil, nil, err
		}
		s.workers = append(s.workers, c)
		if _, err := c.Execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
			s.close()
			return nil, nil, fmt.Errorf("worker %d: set isolation level: %w", i, err)
		}
	}
	fail := func(err error) (*snapshot, *Schema, error) {
		coord.Execute("BACKUP STAGE END")
		s.close()
		return nil, nil, err
	}
	for _, q := range []string{"BACKUP STAGE START", "BACKUP STAGE BLOCK_DDL"} {
		if _, err := coord.Execute(q); err != nil {
			return fail(fmt.Errorf("%s (needs the RELOAD privilege): %w", q, err))
		}
	}
	s.ddlFrom = time.Now()
	schema, err := readSchema(coord, cfg.Databases, cfg.WithUsers, cfg.Log)
	if err != nil {
		return fail(err)
	}
	// BLOCK_COMMIT also blocks every write to non-transactional tables
	// (MyISAM, Aria): held until they are copied, when there are any.
	if _, err := coord.Execute("BACKUP STAGE BLOCK_COMMIT"); err != nil {
		return fail(fmt.Errorf("BACKUP STAGE BLOCK_COMMIT: %w", err))
	}
	s.lockFrom = time.Now()
	for i, w := range s.workers {
		if _, err := w.Execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
			return fail(fmt.Errorf("worker %d: start snapshot: %w", i, err))
		}
		if !id.LogBin {
			continue // a replica without a binlog: the GTIDs below are the coordinates
		}
		file, pos, err := snapshotCoordinates(w)
		if err != nil {
			return fail(fmt.Errorf("worker %d: %w", i, err))
		}
		if i == 0 {
			s.file, s.pos = file, pos
		} else if file != s.file || pos != s.pos {
			// Cannot happen while commits are blocked; refuse rather than
			// copy tables from different moments.
			return fail(fmt.Errorf("worker %d's snapshot is at %s:%d, worker 0's at %s:%d: snapshots differ", i, file, pos, s.file, s.pos))
		}
	}
	if id.Replica {
		// Still under BLOCK_COMMIT, which holds the replica's applier too.
		if s.primaryGTID, err = appliedGTIDs(s.workers[0]); err != nil {
			return fail(err)
		}
	}
	s.taken = time.Now().UTC()
	if !schema.hasLocked() {
		if err := s.release(coord); err != nil {
			return fail(err)
		}
	}
	if !id.LogBin {
		return s, schema, nil
	}
	// BINLOG_GTID_POS maps the file/offset to the GTID position; the current
	// @@gtid_binlog_pos would not match the snapshot.
	r, err := coord.Execute("SELECT BINLOG_GTID_POS(?, ?)", s.file, s.pos)
	if err != nil {
		s.release(coord)
		s.close()
		return nil, nil, fmt.Errorf("BINLOG_GTID_POS(%s, %d): %w", s.file, s.pos, err)
	}
	g, _ := r.GetString(0, 0)
	st, err := binlog.ParseMariaState(g)
	if err != nil {
		s.close()
		s.release(coord)
		return nil, nil, fmt.Errorf("BINLOG_GTID_POS(%s, %d) = %q: %w", s.file, s.pos, g, err)
	}
	s.gtid = st.String() // canonical, as the binlog stream writes positions
	return s, schema, nil
}

// snapshotCoordinates reads the binlog position a connection's consistent
// snapshot corresponds to.
func snapshotCoordinates(c *client.Conn) (string, uint32, error) {
	rows, err := query(c, "SHOW STATUS LIKE 'binlog_snapshot_%'")
	if err != nil {
		return "", 0, fmt.Errorf("read binlog_snapshot status: %w", err)
	}
	var file string
	var pos uint64
	for _, r := range rows {
		switch string(r["Variable_name"]) {
		case "Binlog_snapshot_file":
			file = string(r["Value"])
		case "Binlog_snapshot_position":
			pos, _ = strconv.ParseUint(string(r["Value"]), 10, 32)
		}
	}
	if file == "" || pos < 4 {
		return "", 0, fmt.Errorf("the server reports no binlog snapshot position (binary logging off?)")
	}
	return file, uint32(pos), nil
}

// appliedGTIDs reads, inside a connection's consistent snapshot, the GTID
// position of what a replica had applied: the newest row per domain of
// mysql.gtid_slave_pos, which the replica's applier updates in the
// transaction it applies (so the snapshot sees exactly the position of
// the transactions it holds). @@gtid_slave_pos is the same table read
// outside any snapshot.
func appliedGTIDs(c *client.Conn) (string, error) {
	// In a non-transactional table the row of a transaction the stage
	// holds back would be visible already, and the base would skip it.
	eng, err := query(c, "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'mysql' AND TABLE_NAME = 'gtid_slave_pos'")
	if err != nil {
		return "", fmt.Errorf("read the engine of mysql.gtid_slave_pos: %w", err)
	}
	if len(eng) != 1 || !strings.EqualFold(string(eng[0]["ENGINE"]), "InnoDB") {
		return "", fmt.Errorf("%w: mysql.gtid_slave_pos on the replica is not an InnoDB table, so a snapshot cannot read the position it is consistent with (ALTER TABLE mysql.gtid_slave_pos ENGINE=InnoDB on the replica)",
			binlog.ErrUnsupported)
	}
	rows, err := query(c, `SELECT p.domain_id, p.server_id, p.seq_no FROM mysql.gtid_slave_pos p
		JOIN (SELECT domain_id, MAX(sub_id) AS sub_id FROM mysql.gtid_slave_pos GROUP BY domain_id) m
		ON p.domain_id = m.domain_id AND p.sub_id = m.sub_id`)
	if err != nil {
		return "", fmt.Errorf("read the replica's applied GTID position (mysql.gtid_slave_pos; needs SELECT on it): %w", err)
	}
	st := binlog.MariaState{}
	for _, r := range rows {
		g, err := binlog.ParseMariaGTID(fmt.Sprintf("%s-%s-%s", r["domain_id"], r["server_id"], r["seq_no"]))
		if err != nil {
			return "", fmt.Errorf("mysql.gtid_slave_pos: %w", err)
		}
		st[g.Domain] = g
	}
	if len(st) == 0 {
		return "", fmt.Errorf("the replica has applied nothing from its primary yet (mysql.gtid_slave_pos is empty): a backup of it has no position in the primary's binlog")
	}
	return st.String(), nil
}
