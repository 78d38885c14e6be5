package binlog

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
)

// Source is a server to connect to.
type Source struct {
	Host     string
	Port     uint16
	User     string
	Password string
}

// Addr is host:port.
func (s Source) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(int(s.Port))) }

// ParseSource reads a mysql:// or mariadb:// URL (user[:password]@host[:port]/)
// naming one server.
func ParseSource(raw string) (Source, error) {
	srcs, err := ParseSources(raw)
	if err != nil {
		return Source{}, err
	}
	if len(srcs) != 1 {
		return Source{}, fmt.Errorf("source URL: %d hosts: name the one server to use (several hosts are for stream, which follows the primary)", len(srcs))
	}
	return srcs[0], nil
}

// ParseSources reads a source URL that may name several servers of one
// replication cluster, mysql://user@h1:3306,h2:3306/, in the URL's order.
func ParseSources(raw string) ([]Source, error) {
	// url.Parse takes one host: the list is split off first (an IPv6
	// literal in brackets must not be the URL parser's problem).
	var hosts []string
	if scheme, rest, ok := strings.Cut(raw, "://"); ok {
		auth, path, _ := strings.Cut(rest, "/")
		at := strings.LastIndexByte(auth, '@')
		for _, h := range strings.Split(auth[at+1:], ",") {
			hosts = append(hosts, scheme+"://"+auth[:at+1]+h+"/"+path)
		}
	} else {
		hosts = []string{raw}
	}
	var srcs []Source
	for _, h := range hosts {
		s, err := parseOne(h)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, s)
	}
	return srcs, nil
}

func parseOne(raw string) (Source, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Source{}, fmt.Errorf("source URL: %w", err)
	}
	if u.Scheme != "mysql" && u.Scheme != "mariadb" {
		return Source{}, fmt.Errorf("source URL: scheme %q is not mysql:// or mariadb://", u.Scheme)
	}
	s := Source{Host: u.Hostname(), Port: 3306, User: u.User.Username()}
	s.Password, _ = u.User.Password()
	if s.Host == "" {
		s.Host = "127.0.0.1"
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return Source{}, fmt.Errorf("source URL: port %q", p)
		}
		s.Port = uint16(n)
	}
	if s.User == "" {
		return Source{}, fmt.Errorf("source URL %s: a user is required", u.Redacted())
	}
	return s, nil
}

// Connect opens a client session.
func (s Source) Connect(ctx context.Context) (*client.Conn, error) {
	var d net.Dialer
	c, err := client.ConnectWithDialer(ctx, "tcp", s.Addr(), s.User, s.Password, "", d.DialContext)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", s.Addr(), err)
	}
	return c, nil
}

// serverInfo is what the streamer checks on every connect.
type serverInfo struct {
	Version   string
	MariaDB   bool
	ServerID  uint32
	UUID      string // MySQL @@server_uuid; MariaDB has none
	Hostname  string
	Checksum  string
	Format    string
	LogBin    bool
	GTIDState string // MariaDB @@gtid_binlog_state, MySQL @@gtid_executed
	SlavePos  string // MariaDB @@gtid_slave_pos: what it applied as a replica
	ReadOnly  bool
	// Replica: replication from another server is configured (MariaDB),
	// or, without the privilege to see that, running.
	Replica bool
	Files   []string
}

func inspect(c *client.Conn) (*serverInfo, error) {
	si := &serverInfo{}
	r, err := c.Execute("SELECT VERSION(), @@server_id, @@hostname, @@log_bin, @@binlog_format, @@binlog_checksum")
	if err != nil {
		return nil, fmt.Errorf("read server settings: %w", err)
	}
	si.Version, _ = r.GetString(0, 0)
	id, _ := r.GetInt(0, 1)
	si.ServerID = uint32(id)
	si.Hostname, _ = r.GetString(0, 2)
	lb, _ := r.GetInt(0, 3)
	si.LogBin = lb == 1
	si.Format, _ = r.GetString(0, 4)
	si.Checksum, _ = r.GetString(0, 5)
	si.MariaDB = strings.Contains(strings.ToLower(si.Version), "mariadb")
	q := "SELECT @@server_uuid, @@gtid_executed, '', @@read_only"
	if si.MariaDB {
		q = "SELECT '', @@gtid_binlog_state, @@gtid_slave_pos, @@read_only"
	}
	if r, err = c.Execute(q); err != nil {
		return nil, fmt.Errorf("read server identity: %w", err)
	}
	si.UUID, _ = r.GetString(0, 0)
	si.GTIDState, _ = r.GetString(0, 1)
	si.GTIDState = strings.ReplaceAll(strings.TrimSpace(si.GTIDState), "\n", "")
	si.SlavePos, _ = r.GetString(0, 2)
	ro, _ := r.GetInt(0, 3)
	si.ReadOnly = ro == 1
	if si.MariaDB {
		if si.Replica, err = isReplica(c); err != nil {
			return nil, err
		}
	}
	if !si.LogBin {
		return si, nil // nothing to list; the streamer refuses the server (check)
	}
	if r, err = c.Execute("SHOW BINARY LOGS"); err != nil {
		return nil, fmt.Errorf("list binary logs: %w", err)
	}
	for i := range r.RowNumber() {
		f, _ := r.GetString(i, 0)
		si.Files = append(si.Files, f)
	}
	return si, nil
}

// isReplica reports whether replication from another server is
// configured (SHOW ALL SLAVES STATUS lists a connection). Without the
// privilege to list them (SLAVE MONITOR), a running replication SQL thread
// (status Slaves_running, readable by anyone) is the sign.
func isReplica(c *client.Conn) (bool, error) {
	r, err := c.Execute("SHOW ALL SLAVES STATUS")
	if err == nil {
		return r.RowNumber() > 0, nil
	}
	var me *mysql.MyError
	if !errors.As(err, &me) || (me.Code != mysql.ER_SPECIFIC_ACCESS_DENIED_ERROR && me.Code != mysql.ER_ACCESS_DENIED_ERROR) {
		return false, fmt.Errorf("read replication status: %w", err)
	}
	if r, err = c.Execute("SHOW GLOBAL STATUS LIKE 'Slaves_running'"); err != nil {
		return false, fmt.Errorf("read replication status: %w", err)
	}
	n, _ := r.GetInt(0, 1)
	return n > 0, nil
}

// clusterID names the server a repository belongs to. MySQL has a UUID;
// MariaDB has none, so its identity is server id and host name.
func (si *serverInfo) clusterID() string {
	if si.UUID != "" {
		return si.UUID
	}
	return fmt.Sprintf("mariadb-%d@%s", si.ServerID, si.Hostname)
}

// streamName is the archive stream of a server's binlog.
func (si *serverInfo) streamName() string {
	if si.UUID != "" {
		return StreamPrefix + si.UUID
	}
	return fmt.Sprintf("%s%010d", StreamPrefix, si.ServerID)
}

// StreamPrefix: binlog streams are named binlog/<server uuid> (MySQL) or
// binlog/<server id, 10 digits> (MariaDB).
const StreamPrefix = "binlog/"

func (si *serverInfo) flavor() string {
	if si.MariaDB {
		return mysql.MariaDBFlavor
	}
	return mysql.MySQLFlavor
}

func (si *serverInfo) hasFile(f string) bool {
	for _, x := range si.Files {
		if x == f {
			return true
		}
	}
	return false
}

// DefaultServerID derives a replica server id from the repository id: the
// same repository always registers with the same id, two repositories
// almost never collide, and the high bit keeps it clear of the small ids
// people give real servers.
func DefaultServerID(repoID string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(repoID))
	return h.Sum32() | 1<<31
}
