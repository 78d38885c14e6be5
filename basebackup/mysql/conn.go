package mysql

// Connections to the server. ConnectRaw's session (binary character set,
// UTC) is part of the row format's contract: the backup reads rows in it
// and restore/mysql loads them in it, so bytes and TIMESTAMPs come back
// exactly as stored. That is why it lives here beside rows.go, with
// QuoteIdent, which both sides use too, rather than in restore.

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/tidemark/tidemark/binlog"
)

// ConnectRaw opens a session with the connection character set binary,
// so values and names arrive as the server's raw bytes, and UTC as the
// time zone, so TIMESTAMP values are what is stored. Options apply before
// the handshake (capabilities such as CLIENT_LOCAL_FILES).
func ConnectRaw(ctx context.Context, s binlog.Source, options ...client.Option) (*client.Conn, error) {
	var d net.Dialer
	c, err := client.ConnectWithDialer(ctx, "tcp", s.Addr(), s.User, s.Password, "", d.DialContext, options...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", s.Addr(), err)
	}
	for _, q := range []string{"SET NAMES binary", "SET SESSION time_zone = '+00:00'"} {
		if _, err := c.Execute(q); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s on %s: %w", q, s.Addr(), err)
		}
	}
	return c, nil
}

// query runs a text-protocol statement and returns its rows as byte slices
// by column name, for catalog reads.
func query(c *client.Conn, q string, args ...any) ([]map[string][]byte, error) {
	var r *mysql.Result
	var err error
	if len(args) > 0 {
		r, err = c.Execute(q, args...)
	} else {
		r, err = c.Execute(q)
	}
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if r.Resultset == nil {
		return nil, nil
	}
	out := make([]map[string][]byte, len(r.Values))
	for i, row := range r.Values {
		m := make(map[string][]byte, len(row))
		for j, f := range r.Fields {
			if row[j].Type == mysql.FieldValueTypeNull {
				continue
			}
			m[string(f.Name)] = []byte(fmt.Sprint(row[j].Value()))
			if row[j].Type == mysql.FieldValueTypeString {
				m[string(f.Name)] = append([]byte(nil), row[j].AsString()...)
			}
		}
		out[i] = m
	}
	return out, nil
}

// QuoteIdent quotes a MySQL identifier.
func QuoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }
