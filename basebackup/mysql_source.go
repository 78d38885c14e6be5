package basebackup

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
)

// MySQLServer is a server to connect to, from a mysql:// URL.
type MySQLServer struct {
	Host     string
	Port     uint16
	User     string
	Password string
}

// Addr is host:port.
func (s MySQLServer) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(int(s.Port))) }

// ParseMySQLURL reads mysql://user[:password]@host[:port]/; password, when
// not empty, replaces the URL's (it comes from a file).
func ParseMySQLURL(raw, password string) (MySQLServer, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return MySQLServer{}, fmt.Errorf("MySQL URL: %w", err)
	}
	if u.Scheme != "mysql" && u.Scheme != "mariadb" {
		return MySQLServer{}, fmt.Errorf("MySQL URL: scheme %q is not mysql:// or mariadb://", u.Scheme)
	}
	s := MySQLServer{Host: u.Hostname(), Port: 3306, User: u.User.Username()}
	s.Password, _ = u.User.Password()
	if password != "" {
		s.Password = password
	}
	if s.Host == "" {
		s.Host = "127.0.0.1"
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return MySQLServer{}, fmt.Errorf("MySQL URL: port %q", p)
		}
		s.Port = uint16(n)
	}
	if s.User == "" {
		return MySQLServer{}, fmt.Errorf("MySQL URL %s: a user is required", u.Redacted())
	}
	return s, nil
}

// Connect opens a session with the connection character set binary, so
// values and names arrive as the server's raw bytes, and UTC as the time
// zone, so TIMESTAMP values are what is stored.
func (s MySQLServer) Connect(ctx context.Context) (*client.Conn, error) {
	var d net.Dialer
	c, err := client.ConnectWithDialer(ctx, "tcp", s.Addr(), s.User, s.Password, "", d.DialContext)
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

// mysqlIdentity is who the server is, as the binlog streamer names it: the
// repository's source binding and stream name must agree between the two.
type mysqlIdentity struct {
	Version  string
	MariaDB  bool
	ServerID uint32
	Hostname string
	UUID     string
}

func identify(c *client.Conn) (*mysqlIdentity, error) {
	r, err := c.Execute("SELECT VERSION(), @@server_id, @@hostname, @@log_bin")
	if err != nil {
		return nil, fmt.Errorf("read server settings: %w", err)
	}
	id := &mysqlIdentity{}
	id.Version, _ = r.GetString(0, 0)
	sid, _ := r.GetInt(0, 1)
	id.ServerID = uint32(sid)
	id.Hostname, _ = r.GetString(0, 2)
	if lb, _ := r.GetInt(0, 3); lb != 1 {
		return nil, fmt.Errorf("the server has binary logging off (log_bin): a base backup without binlog coordinates cannot be rolled forward")
	}
	id.MariaDB = strings.Contains(strings.ToLower(id.Version), "mariadb")
	if !id.MariaDB {
		if r, err = c.Execute("SELECT @@server_uuid"); err != nil {
			return nil, fmt.Errorf("read server uuid: %w", err)
		}
		id.UUID, _ = r.GetString(0, 0)
	}
	return id, nil
}

func (id *mysqlIdentity) clusterID() string {
	if id.UUID != "" {
		return id.UUID
	}
	return fmt.Sprintf("mariadb-%d@%s", id.ServerID, id.Hostname)
}

// streamName is the archive stream holding this server's binlog.
func (id *mysqlIdentity) streamName() string {
	if id.UUID != "" {
		return "binlog/" + id.UUID
	}
	return fmt.Sprintf("binlog/%010d", id.ServerID)
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

// quoteIdent quotes a MySQL identifier.
func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// QuoteIdent quotes a MySQL identifier (exported for restore).
func QuoteIdent(s string) string { return quoteIdent(s) }
