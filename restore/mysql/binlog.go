package mysql

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/restore"
)

// BinlogReplayOptions tune ReplayBinlog.
type BinlogReplayOptions struct {
	// SkipGTIDs applies transactions under the target's own GTIDs instead
	// of the archived ones (MariaDB: no SET gtid_domain_id/server_id/
	// gtid_seq_no; MySQL: no SET gtid_next).
	SkipGTIDs bool
	Log       *slog.Logger
	// Progress, when set, is called after every applied transaction.
	Progress func(BinlogReplayResult)
}

// BinlogReplayResult says what a replay applied.
type BinlogReplayResult struct {
	Transactions int64
	Events       int64
	From         binlog.Position // the base position replay started at
	End          binlog.Position // the boundary after the last applied transaction
	LastTime     time.Time       // commit time of the last applied transaction
	LastGTID     string
	Window       binlog.Window // what the archive could have reached from From
	// EventsRead of EventsPlanned: archived events passed so far (applied
	// or before the base) of those up to the target, for progress.
	EventsRead, EventsPlanned int64
}

// CheckBinlogCoverage is binlog.CheckCoverage with the restore error
// classes: restore.ErrGap names the missing range, restore.ErrUnreachable the recoverable
// window. Call it before writing anything to the target.
func CheckBinlogCoverage(ctx context.Context, repo *archive.Repository, from binlog.Position, to binlog.Target) error {
	return binlogErr(binlog.CheckCoverage(ctx, repo, from, to))
}

func binlogErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, binlog.ErrNotCovered):
		return fmt.Errorf("%w: %w", restore.ErrGap, err)
	case errors.Is(err, binlog.ErrOutsideWindow):
		return fmt.Errorf("%w: %w", restore.ErrUnreachable, err)
	}
	return err
}

// ReplayBinlog applies the archived binlog from the base position from to
// the target on a running server, in one session (temporary tables live in
// the session), the way mysqlbinlog piped into the client does: row events
// as BINLOG statements after their format description, statements as SQL
// with the session state they were logged with, every transaction whole.
// Coverage is checked before the first statement is sent. On error the
// transaction being applied is rolled back and the result says what was
// applied before it.
func ReplayBinlog(ctx context.Context, repo *archive.Repository, conn *client.Conn, from binlog.Position, to binlog.Target, opts BinlogReplayOptions) (*BinlogReplayResult, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	rd, err := binlog.NewReader(ctx, repo, from, to)
	if err != nil {
		return nil, binlogErr(err)
	}
	res := &BinlogReplayResult{From: from, End: from, Window: rd.Window()}
	ap, err := newBinlogApplier(conn, opts)
	if err != nil {
		return nil, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		txn, err := rd.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, binlogErr(err)
		}
		if err := ap.apply(txn); err != nil {
			ap.rollback()
			return res, fmt.Errorf("replay transaction %s at %s:%d (applied through %s): %w", binlogTxnName(txn), txn.Start.File, txn.Start.Pos, res.End, err)
		}
		res.Transactions++
		res.Events += int64(len(txn.Events))
		res.End, res.LastTime = txn.End, txn.Time
		if txn.GTID != "" {
			res.LastGTID = txn.GTID
		}
		if opts.Progress != nil {
			res.EventsRead, res.EventsPlanned = rd.Progress()
			opts.Progress(*res)
		}
	}
	if err := ap.finish(); err != nil {
		return res, err
	}
	if res.EventsRead, res.EventsPlanned = rd.Progress(); opts.Progress != nil {
		opts.Progress(*res) // the events after the last transaction were read too
	}
	opts.Log.Info("binlog replayed", replayedAttrs(from, res)...)
	return res, nil
}

// replayedAttrs describes a finished replay for the log: the last commit
// and GTID only when something was replayed (a zero time reads
// "0001-01-01").
func replayedAttrs(from binlog.Position, res *BinlogReplayResult) []any {
	attrs := []any{"transactions", res.Transactions, "events", res.Events, "from", from.String(), "to", res.End.String()}
	if !res.LastTime.IsZero() {
		attrs = append(attrs, "last_commit", res.LastTime.UTC())
	}
	if res.LastGTID != "" {
		attrs = append(attrs, "last_gtid", res.LastGTID)
	}
	return attrs
}

func binlogTxnName(t *binlog.Txn) string {
	if t.GTID != "" {
		return t.GTID
	}
	return "(no GTID)"
}

// binlogApplier is one replay session's state.
type binlogApplier struct {
	c       *client.Conn
	opts    BinlogReplayOptions
	mariadb bool
	fde     []byte         // format description last sent
	rows    []byte         // table map and rows events of the current statement
	sess    binlogSessVars // session state last set
	gtidSet bool           // MySQL gtid_next was set and must be reset
}

func newBinlogApplier(c *client.Conn, opts BinlogReplayOptions) (*binlogApplier, error) {
	r, err := c.Execute("SELECT VERSION()")
	if err != nil {
		return nil, fmt.Errorf("replay: read target version: %w", err)
	}
	v, _ := r.GetString(0, 0)
	return &binlogApplier{c: c, opts: opts, mariadb: strings.Contains(strings.ToLower(v), "mariadb"), sess: binlogSessVars{}}, nil
}

func (a *binlogApplier) exec(sql string) error {
	if _, err := a.c.Execute(sql); err != nil {
		return fmt.Errorf("%s: %w", shortSQL(sql), err)
	}
	return nil
}

func shortSQL(sql string) string {
	if len(sql) > 120 {
		return sql[:120] + "…"
	}
	return sql
}

func (a *binlogApplier) binlogStatement(events []byte) error {
	return a.exec("BINLOG '" + base64.StdEncoding.EncodeToString(events) + "'")
}

func (a *binlogApplier) apply(t *binlog.Txn) error {
	if string(a.fde) != string(t.Format.Raw) {
		if err := a.binlogStatement(t.Format.Raw); err != nil {
			return fmt.Errorf("format description: %w", err)
		}
		a.fde = t.Format.Raw
	}
	for _, e := range t.Events {
		if err := a.event(t.Format, e); err != nil {
			return fmt.Errorf("%s event at %d: %w", e.Type, e.Start(), err)
		}
	}
	if len(a.rows) > 0 {
		return fmt.Errorf("rows events without a statement end")
	}
	if a.gtidSet {
		a.gtidSet = false
		return a.exec("SET @@session.gtid_next='AUTOMATIC'")
	}
	return nil
}

func (a *binlogApplier) event(f *binlog.Format, e binlog.Event) error {
	body, err := f.Body(e)
	if err != nil {
		return err
	}
	switch e.Type {
	case replication.MARIADB_GTID_EVENT:
		return a.mariaGTID(e, body)
	case replication.GTID_EVENT:
		if a.opts.SkipGTIDs || a.mariadb || len(body) < 25 {
			return nil
		}
		a.gtidSet = true
		return a.exec(fmt.Sprintf("SET @@session.gtid_next='%s'", mysqlGTIDText(body)))
	case replication.QUERY_EVENT, replication.MARIADB_QUERY_COMPRESSED_EVENT:
		return a.query(e, body)
	case replication.TABLE_MAP_EVENT:
		a.rows = append(a.rows, e.Raw...)
		return nil
	case replication.WRITE_ROWS_EVENTv0, replication.UPDATE_ROWS_EVENTv0, replication.DELETE_ROWS_EVENTv0,
		replication.WRITE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv1,
		replication.WRITE_ROWS_EVENTv2, replication.UPDATE_ROWS_EVENTv2, replication.DELETE_ROWS_EVENTv2,
		replication.MARIADB_WRITE_ROWS_COMPRESSED_EVENT_V1, replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1,
		replication.MARIADB_DELETE_ROWS_COMPRESSED_EVENT_V1, replication.PARTIAL_UPDATE_ROWS_EVENT:
		a.rows = append(a.rows, e.Raw...)
		if !f.RowsStmtEnd(e, body) {
			return nil
		}
		rows := a.rows
		a.rows = nil
		return a.binlogStatement(rows)
	case replication.XID_EVENT:
		return a.exec("COMMIT")
	case replication.INTVAR_EVENT:
		if len(body) < 9 {
			return fmt.Errorf("%w: INTVAR event too short", binlog.ErrCorrupt)
		}
		name := "INSERT_ID"
		if body[0] == 1 {
			name = "LAST_INSERT_ID"
		}
		return a.exec(fmt.Sprintf("SET %s=%d", name, binlogU64(body[1:])))
	case replication.RAND_EVENT:
		if len(body) < 16 {
			return fmt.Errorf("%w: RAND event too short", binlog.ErrCorrupt)
		}
		return a.exec(fmt.Sprintf("SET @@RAND_SEED1=%d, @@RAND_SEED2=%d", binlogU64(body), binlogU64(body[8:])))
	case replication.USER_VAR_EVENT:
		return a.userVar(body)
	case replication.ANONYMOUS_GTID_EVENT, replication.MARIADB_ANNOTATE_ROWS_EVENT, replication.ROWS_QUERY_EVENT,
		replication.MARIADB_BINLOG_CHECKPOINT_EVENT, replication.MARIADB_GTID_LIST_EVENT, replication.PREVIOUS_GTIDS_EVENT,
		replication.IGNORABLE_EVENT, replication.HEARTBEAT_EVENT, replication.HEARTBEAT_LOG_EVENT_V2:
		return nil
	case replication.INCIDENT_EVENT:
		return fmt.Errorf("the source logged an incident (lost events): its binlog is incomplete here")
	}
	if e.Flags&replication.LOG_EVENT_IGNORABLE_F != 0 {
		return nil
	}
	return fmt.Errorf("replay of %s events is not supported", e.Type)
}

// mariaGTID keeps the archived GTID: the same domain, server id and
// sequence number on the target as on the source.
func (a *binlogApplier) mariaGTID(e binlog.Event, body []byte) error {
	if a.opts.SkipGTIDs || !a.mariadb || len(body) < 12 {
		return nil
	}
	want := []sessVar{{"gtid_domain_id", fmt.Sprint(binlogU32(body[8:]))}, {"server_id", fmt.Sprint(e.ServerID)}}
	set := a.sess.changes(want)
	set = append(set, fmt.Sprintf("@@session.gtid_seq_no=%d", binlogU64(body)))
	if err := a.exec("SET " + strings.Join(set, ", ")); err != nil {
		return fmt.Errorf("%w (replay with SkipGTIDs to apply under the target's own GTIDs)", err)
	}
	return nil
}

func (a *binlogApplier) rollback() {
	a.rows = nil
	_, _ = a.c.Execute("ROLLBACK")
	if a.gtidSet {
		a.gtidSet = false
		_, _ = a.c.Execute("SET @@session.gtid_next='AUTOMATIC'")
	}
}

// finish leaves the session as a client expects it: no pseudo-state from
// the source.
func (a *binlogApplier) finish() error {
	_, err := a.c.Execute("SET TIMESTAMP=DEFAULT")
	if err != nil {
		return fmt.Errorf("replay: reset session: %w", err)
	}
	return nil
}
