package binlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/supervise"
)

// streamer is one Stream call's state, kept across reconnects.
type streamer struct {
	cfg    Config
	src    Source // the server streamed from (one of cfg.Sources)
	w      *archive.StreamWriter
	stream string
	bound  string // cluster id of the server streamed from (the bound one, or a member of its cluster)

	// cur is the transaction boundary after the last appended unit: where
	// a new connection resumes. next is the running offset inside the
	// current transaction.
	cur    Position
	next   uint32
	maria  MariaState
	mysql  *mysql.MysqlGTIDSet
	format *Format
	header []byte // segment header (magic + format description) of headerFile
	hfile  string
	grp    grouper
	events int64
}

// session is one connection's worth of streaming. progressed reports
// whether anything was made durable, to reset the reconnect backoff.
func (s *streamer) session(ctx context.Context) (progressed bool, err error) {
	conn, si, err := s.resolve(ctx)
	if err != nil {
		return false, err
	}
	err = s.check(ctx, conn, si)
	conn.Close()
	if err != nil {
		return false, err
	}
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID: s.cfg.ServerID, Flavor: si.flavor(), Host: s.src.Host, Port: s.src.Port,
		User: s.src.User, Password: s.src.Password,
		RawModeEnabled: true, VerifyChecksum: true, DisableRetrySync: true,
		HeartbeatPeriod: s.cfg.Heartbeat, ReadTimeout: 3 * s.cfg.Heartbeat,
		DumpCommandFlag: annotateFlag(si), Logger: quietLogger(s.cfg.Log),
		EventCacheCount: 512, // events queued between the connection and us: bounds memory
	})
	defer syncer.Close()
	s.next, s.format = s.cur.Pos, nil
	s.grp.reset()
	st, err := syncer.StartSync(mysql.Position{Name: s.cur.File, Pos: s.cur.Pos})
	if err != nil {
		return false, dumpRefused(classify(err, s.cur))
	}
	supervise.Connected(ctx)
	s.cfg.Log.Info("streaming binlog", "server", s.src.Addr(), "version", si.Version, "from", s.cur.String(),
		"stream", s.stream, "replica_server_id", s.cfg.ServerID)
	var flushAt time.Time
	for first := true; ; first = false {
		ectx, cancel := ctx, context.CancelFunc(func() {})
		if !flushAt.IsZero() {
			ectx, cancel = context.WithDeadline(ctx, flushAt)
		}
		ev, err := st.GetEvent(ectx)
		cancel()
		if err == nil {
			err = s.handle(ctx, append([]byte(nil), ev.RawData...))
			if err == nil && isHeartbeat(ev.Header.EventType) && s.w.Pending() == 0 {
				s.reportCaughtUp()
			}
		} else if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			err = nil
		} else if ctx.Err() == nil {
			err = classify(err, s.cur)
			if first {
				err = dumpRefused(err)
			}
		}
		if err != nil {
			return progressed, err
		}
		if s.w.Pending() > 0 && flushAt.IsZero() {
			flushAt = time.Now().Add(s.cfg.FlushInterval)
		}
		if !flushAt.IsZero() && !time.Now().Before(flushAt) {
			if err := s.w.Flush(ctx); err != nil {
				return progressed, err
			}
			flushAt, progressed = time.Time{}, true
			s.report()
		}
	}
}

// check verifies the server on every connect: the same server, the file to
// resume from still there, its GTID history not behind the archive's. The
// first connect binds the repository and opens the stream.
func (s *streamer) check(ctx context.Context, conn *client.Conn, si *serverInfo) error {
	if !si.LogBin {
		return fmt.Errorf("%w: binary logging is off on the source %s: set log_bin and binlog_format=ROW (e.g. log_bin = mysql-bin, binlog_format = ROW in its config) and restart it",
			ErrUnsupported, s.src.Addr())
	}
	if !strings.EqualFold(si.Checksum, "CRC32") {
		s.cfg.Log.Warn("binlog_checksum is not CRC32: archived events cannot be verified", "binlog_checksum", si.Checksum)
	}
	if !strings.EqualFold(si.Format, "ROW") {
		s.cfg.Log.Warn("binlog_format is not ROW: statement-based events replay only as exactly as the server logged them", "binlog_format", si.Format)
	}
	switch {
	case s.w == nil:
		if err := s.open(ctx, conn, si); err != nil {
			return err
		}
	case si.clusterID() == s.bound:
	case len(s.cfg.Sources) == 1:
		return fmt.Errorf("%w: the server at %s is now %s, the archive holds %s", ErrGap, s.src.Addr(), si.clusterID(), s.bound)
	default:
		// Another server of the cluster is the primary now: the stream of
		// the old one ends here, the new one's continues it by GTID.
		if err := s.w.Close(ctx); err != nil {
			return err
		}
		s.report()
		s.cfg.Log.Warn("the primary changed: continuing the archive on the new one", "from_stream", s.stream, "server", s.src.Addr(),
			"server_id", si.ServerID, "archived_to", s.cur.String())
		s.w = nil
		if err := s.open(ctx, conn, si); err != nil {
			return err
		}
	}
	if !si.hasFile(s.cur.File) {
		oldest := "none"
		if len(si.Files) > 0 {
			oldest = si.Files[0]
		}
		return fmt.Errorf("%w: binlog %s, needed to continue from %s, is no longer on the server (purged?); its oldest is %s",
			ErrGap, s.cur.File, s.cur, oldest)
	}
	if si.MariaDB && s.maria != nil {
		// gtid_binlog_state names the last GTID of every origin server
		// in a domain; the newest per domain is the server's position.
		srv := MariaState{}
		if err := srv.mergeList(si.GTIDState); err != nil {
			return fmt.Errorf("server gtid_binlog_state %q: %w", si.GTIDState, err)
		}
		for d, g := range s.maria {
			sg, ok := srv[d]
			if !ok {
				return fmt.Errorf("%w: GTID domain %d (archived up to %s) is gone from the server (gtid_binlog_state %q)", ErrGap, d, g, si.GTIDState)
			}
			if sg.Seq < g.Seq {
				return fmt.Errorf("%w: the server's GTID %s is behind the archive's %s: its history is not the archived one", ErrGap, sg, g)
			}
		}
	}
	return nil
}

func (s *streamer) open(ctx context.Context, conn *client.Conn, si *serverInfo) error {
	stream := si.streamName()
	w, err := s.cfg.Repo.OpenStream(ctx, stream, archive.StreamWriterOptions{MaxSegmentBytes: s.cfg.MaxSegmentBytes, MaxSegmentAge: s.cfg.MaxSegmentAge})
	if err != nil {
		return fmt.Errorf("open binlog stream %s: %w", stream, err)
	}
	// A server whose stream is empty in a repository that holds another
	// server's binlog continues that archive by GTID (checked before the
	// bind, so that a promoted replica missing archived transactions is a
	// gap, not a stranger).
	var from Position
	if _, ok := w.Durable(); !ok && si.MariaDB && s.cfg.Start.IsZero() {
		end := s.cur
		if s.maria == nil {
			if end, err = archiveEnd(ctx, s.cfg.Repo); err != nil {
				return err
			}
		}
		if !end.IsZero() {
			if from, err = continueAt(conn, si, s.src.Addr(), end); err != nil {
				return err
			}
		}
	}
	if _, err := bind(ctx, s.cfg.Repo, si); err != nil {
		return err
	}
	s.bound, s.stream = si.clusterID(), stream
	if last, ok := w.Durable(); ok {
		if s.cur, err = ParsePosition(last.End); err != nil {
			return fmt.Errorf("stream %s ends at an unreadable position: %w", s.stream, err)
		}
	} else if !from.IsZero() {
		s.cur = from
		w.Restart(s.cur.String())
	} else {
		s.cur = s.cfg.Start
		if s.cur.IsZero() {
			if len(si.Files) == 0 {
				return fmt.Errorf("%w: the server lists no binary logs", ErrUnsupported)
			}
			s.cur = Position{File: si.Files[0], Pos: 4}
		}
		w.Restart(s.cur.String())
	}
	if err := s.setGTIDState(si, s.cur.GTID); err != nil {
		return err
	}
	s.w = w
	return nil
}

func (s *streamer) setGTIDState(si *serverInfo, state string) error {
	var err error
	if si.MariaDB {
		s.maria, err = ParseMariaState(state)
	} else if state != "" {
		var set mysql.GTIDSet
		set, err = mysql.ParseMysqlGTIDSet(state)
		if err == nil {
			s.mysql = set.(*mysql.MysqlGTIDSet)
		}
	}
	if err != nil {
		return fmt.Errorf("archived GTID state %q: %w", state, err)
	}
	return nil
}

func (s *streamer) gtidString() string {
	switch {
	case s.maria != nil:
		return s.maria.String()
	case s.mysql != nil:
		return s.mysql.String()
	}
	return ""
}

func (s *streamer) report() {
	d, ok := s.w.Durable()
	if !ok || s.cfg.Progress == nil {
		return
	}
	p, _ := ParsePosition(d.End)
	s.cfg.Progress(Progress{Stream: s.stream, Server: s.src.Addr(), Durable: p, EventTime: d.LastTime, Events: s.events})
}

// reportCaughtUp tells the caller the archive holds all the server sent:
// the server sends heartbeats only when it has nothing else to send.
func (s *streamer) reportCaughtUp() {
	d, ok := s.w.Durable()
	if !ok || s.cfg.Progress == nil {
		return
	}
	p, _ := ParsePosition(d.End)
	s.cfg.Progress(Progress{Stream: s.stream, Server: s.src.Addr(), Durable: p, EventTime: d.LastTime, Events: s.events, CaughtUp: true})
}

// classify turns the server's "binlog purged" error into a gap.
func classify(err error, at Position) error {
	var me *mysql.MyError
	if (errors.As(err, &me) && me.Code == mysql.ER_MASTER_FATAL_ERROR_READING_BINLOG) || strings.Contains(err.Error(), "ERROR 1236") {
		return fmt.Errorf("%w: the server cannot send the binlog from %s: %v", ErrGap, at, err)
	}
	return fmt.Errorf("binlog stream from %s: %w", at, err)
}

// missingPrivilege marks the server's refusals for want of a privilege
// (REPLICATION SLAVE, BINLOG MONITOR, SELECT on mysql.*) as a
// misconfiguration: reconnecting cannot grant it, so the stream stops
// and says so instead of retrying forever.
func missingPrivilege(err error) error {
	var me *mysql.MyError
	if err == nil || !errors.As(err, &me) {
		return err
	}
	switch me.Code {
	case mysql.ER_SPECIFIC_ACCESS_DENIED_ERROR, mysql.ER_TABLEACCESS_DENIED_ERROR, mysql.ER_DBACCESS_DENIED_ERROR:
		return fmt.Errorf("%w: the streaming user lacks a privilege (docs/setup-mysql.md lists the grants): %w", ErrUnsupported, err)
	}
	return err
}

// dumpRefused: a login refused as the server's answer to the dump
// request, when the same login has just run queries, is MariaDB's way of
// saying REPLICATION SLAVE is missing.
func dumpRefused(err error) error {
	var me *mysql.MyError
	if errors.As(err, &me) && me.Code == mysql.ER_ACCESS_DENIED_ERROR {
		return fmt.Errorf("%w: the server refused the binlog dump (%v): the streaming user needs REPLICATION SLAVE (docs/setup-mysql.md)", ErrUnsupported, err)
	}
	return err
}

func annotateFlag(si *serverInfo) uint16 {
	if si.MariaDB {
		return replication.BINLOG_SEND_ANNOTATE_ROWS_EVENT // archive what the file holds
	}
	return 0
}

// quietLogger keeps go-mysql's per-connection chatter at debug level.
func quietLogger(l *slog.Logger) *slog.Logger {
	return slog.New(levelShift{l.Handler()})
}

type levelShift struct{ slog.Handler }

func (h levelShift) Enabled(ctx context.Context, l slog.Level) bool {
	if l < slog.LevelError {
		l = slog.LevelDebug
	}
	return h.Handler.Enabled(ctx, l)
}

func (h levelShift) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelError {
		r.Level = slog.LevelDebug
	}
	return h.Handler.Handle(ctx, r)
}

func (h levelShift) WithAttrs(a []slog.Attr) slog.Handler { return levelShift{h.Handler.WithAttrs(a)} }
func (h levelShift) WithGroup(n string) slog.Handler      { return levelShift{h.Handler.WithGroup(n)} }

// mariaGTIDList decodes a MariaDB Gtid_list event: the binlog state at the
// start of a file.
func mariaGTIDList(body []byte) (MariaState, error) {
	if len(body) < 4 {
		return nil, fmt.Errorf("%w: GTID list event too short", ErrCorrupt)
	}
	n := int(binary.LittleEndian.Uint32(body) & 0x0fffffff)
	body = body[4:]
	if len(body) < n*16 {
		return nil, fmt.Errorf("%w: GTID list of %d entries in %d bytes", ErrCorrupt, n, len(body))
	}
	st := MariaState{}
	for i := range n {
		b := body[i*16:]
		g := MariaGTID{Domain: binary.LittleEndian.Uint32(b), Server: binary.LittleEndian.Uint32(b[4:]), Seq: binary.LittleEndian.Uint64(b[8:])}
		// One entry per domain and origin server (after a failover,
		// several per domain): the newest is the domain's position.
		if cur, ok := st[g.Domain]; !ok || g.Seq > cur.Seq {
			st[g.Domain] = g
		}
	}
	return st, nil
}
