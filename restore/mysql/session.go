package mysql

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/google/uuid"

	"github.com/tidemark/tidemark/binlog"
)

// binlogSessVars is the session state already set on the target, so each query
// event sends only what changed.
type binlogSessVars map[string]string

type sessVar struct{ k, v string }

func (s binlogSessVars) changes(want []sessVar) []string {
	var out []string
	for _, p := range want {
		if s[p.k] != p.v {
			s[p.k] = p.v
			out = append(out, "@@session."+p.k+"="+p.v)
		}
	}
	return out
}

// query runs a statement with the session state it was logged with.
func (a *binlogApplier) query(e binlog.Event, body []byte) error {
	q, err := binlog.ParseQuery(body)
	if err != nil {
		return err
	}
	sql := q.SQL
	if e.Type == replication.MARIADB_QUERY_COMPRESSED_EVENT {
		b, err := mysql.DecompressMariadbData([]byte(sql))
		if err != nil {
			return fmt.Errorf("%w: compressed query: %v", binlog.ErrCorrupt, err)
		}
		sql = string(b)
	}
	sv, err := binlog.ParseStatusVars(q.StatusVars)
	if err != nil {
		return err
	}
	if q.Schema != "" && a.sess["db"] != q.Schema {
		// CREATE DATABASE is logged with the new database as its default;
		// a replica's binlogApplier sets it without checking, a client cannot.
		_, err := a.c.Execute("USE `" + strings.ReplaceAll(q.Schema, "`", "``") + "`")
		var me *mysql.MyError
		switch {
		case err == nil:
			a.sess["db"] = q.Schema
		case errors.As(err, &me) && me.Code == mysql.ER_BAD_DB_ERROR:
			delete(a.sess, "db")
		default:
			return fmt.Errorf("USE %s: %w", q.Schema, err)
		}
		delete(a.sess, "collation_database") // USE sets it to the database's
	}
	set := a.sess.changes(sessionOf(q, sv))
	ts := fmt.Sprintf("TIMESTAMP=%d", e.When)
	if sv.Microseconds != nil {
		ts = fmt.Sprintf("TIMESTAMP=%d.%06d", e.When, *sv.Microseconds)
	}
	if err := a.exec("SET " + strings.Join(append(set, ts), ", ")); err != nil {
		return err
	}
	_, err = a.c.Execute(sql)
	var me *mysql.MyError
	if err != nil && q.ErrorCode != 0 && errors.As(err, &me) && me.Code == q.ErrorCode {
		return nil // it failed the same way on the source, which logged it anyway
	}
	if err != nil {
		return fmt.Errorf("%s: %w", shortSQL(sql), err)
	}
	return nil
}

func sessionOf(q binlog.Query, sv binlog.StatusVars) []sessVar {
	w := []sessVar{{"pseudo_thread_id", fmt.Sprint(q.ThreadID)}}
	if f := sv.Flags2; f != nil {
		w = append(w, sessVar{"foreign_key_checks", onOff(*f&binlog.OptionNoForeignKeyChecks == 0)},
			sessVar{"sql_auto_is_null", onOff(*f&binlog.OptionAutoIsNull != 0)},
			sessVar{"unique_checks", onOff(*f&binlog.OptionRelaxedUniqueCheck == 0)},
			sessVar{"autocommit", onOff(*f&binlog.OptionNotAutocommit == 0)})
	}
	if sv.SQLMode != nil {
		w = append(w, sessVar{"sql_mode", fmt.Sprint(*sv.SQLMode)})
	}
	if c := sv.Charset; c != nil {
		w = append(w, sessVar{"character_set_client", fmt.Sprint(c[0])}, sessVar{"collation_connection", fmt.Sprint(c[1])},
			sessVar{"collation_server", fmt.Sprint(c[2])})
	}
	if sv.TimeZone != nil {
		w = append(w, sessVar{"time_zone", "'" + mysql.Escape(*sv.TimeZone) + "'"})
	}
	if sv.LCTimeNames != nil {
		w = append(w, sessVar{"lc_time_names", fmt.Sprint(*sv.LCTimeNames)})
	}
	if sv.CharsetDB != nil {
		w = append(w, sessVar{"collation_database", fmt.Sprint(*sv.CharsetDB)})
	}
	if ai := sv.AutoIncrement; ai != nil {
		w = append(w, sessVar{"auto_increment_increment", fmt.Sprint(ai[0])}, sessVar{"auto_increment_offset", fmt.Sprint(ai[1])})
	}
	return w
}

func onOff(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// userVar sets a user variable a statement-based event refers to.
func (a *binlogApplier) userVar(b []byte) error {
	bad := fmt.Errorf("%w: user variable event", binlog.ErrCorrupt)
	if len(b) < 4 {
		return bad
	}
	n := int(binlogU32(b))
	if len(b) < 4+n+1 {
		return bad
	}
	name := "@`" + strings.ReplaceAll(string(b[4:4+n]), "`", "``") + "`"
	b = b[4+n:]
	if b[0] != 0 {
		return a.exec("SET " + name + ":=NULL")
	}
	if len(b) < 1+1+4+4 {
		return bad
	}
	typ, coll, vlen := b[1], binlogU32(b[2:]), int(binlogU32(b[6:]))
	if len(b) < 10+vlen {
		return bad
	}
	val := b[10 : 10+vlen]
	unsigned := len(b) > 10+vlen && b[10+vlen]&1 != 0
	var lit string
	switch typ {
	case 0: // STRING_RESULT
		r, err := a.c.Execute(fmt.Sprintf("SELECT CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLLATIONS WHERE ID=%d", coll))
		if err != nil || r.RowNumber() != 1 {
			return fmt.Errorf("user variable %s: collation %d unknown on the target", name, coll)
		}
		cs, _ := r.GetString(0, 0)
		cn, _ := r.GetString(0, 1)
		lit = fmt.Sprintf("_%s X'%s' COLLATE `%s`", cs, hex.EncodeToString(val), cn)
	case 1: // REAL_RESULT
		if len(val) < 8 {
			return bad
		}
		lit = fmt.Sprintf("%v", math.Float64frombits(binlogU64(val)))
	case 2: // INT_RESULT
		if len(val) < 8 {
			return bad
		}
		if unsigned {
			lit = fmt.Sprint(binlogU64(val))
		} else {
			lit = fmt.Sprint(int64(binlogU64(val)))
		}
	default:
		return fmt.Errorf("replay of user variables of result type %d (decimal) is not supported", typ)
	}
	return a.exec("SET " + name + ":=" + lit)
}

func binlogU32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
func binlogU64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

func mysqlGTIDText(body []byte) string {
	u, _ := uuid.FromBytes(body[1:17])
	return fmt.Sprintf("%s:%d", u, int64(binlogU64(body[17:])))
}
