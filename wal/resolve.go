package wal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// A source URL may name several hosts (an HA pair) and a
// target_session_attrs, as libpq tools accept. pgconn checks those attrs
// with a query after connecting, which a physical walsender refuses
// ("cannot execute SQL commands in WAL sender"). So the host is chosen
// over ordinary connections first, and the replication connection then
// goes to that one host, with no check of its own. Streamers resolve again
// on every reconnect, so they follow a failover.

// Session attrs tidemark understands (libpq's names).
const (
	AttrsAny           = "any"
	AttrsReadWrite     = "read-write"
	AttrsPrimary       = "primary"
	AttrsStandby       = "standby"
	AttrsPreferStandby = "prefer-standby"
)

// Server is the one host of a source that a session talks to.
type Server struct {
	// Addr is host:port, for logs and the heartbeat.
	Addr string
	// Standby: the server is in recovery (pg_is_in_recovery()).
	Standby bool
	// Multi: the source named several hosts.
	Multi bool
	cfg   *pgconn.Config // one host (its TLS fallbacks only), no validation
}

// Ordinary is a connection config for SQL on this server.
func (s *Server) Ordinary() *pgconn.Config { return s.cfg.Copy() }

// Replication is a physical replication connection config for this server.
func (s *Server) Replication(appName string) *pgconn.Config {
	c := s.cfg.Copy()
	c.RuntimeParams["replication"] = "true"
	if c.RuntimeParams["application_name"] == "" {
		c.RuntimeParams["application_name"] = appName
	}
	return c
}

// Resolve picks the server of source that target_session_attrs asks for
// (attrs, when not "", overrides the URL's). Hosts are tried in the
// URL's order; prefer-standby falls back to a primary.
func Resolve(ctx context.Context, source, attrs string) (*Server, error) {
	base, err := pgconn.ParseConfig(source)
	if err != nil {
		return nil, fmt.Errorf("%w: source URL: %v", errPermanent, err)
	}
	if attrs == "" {
		attrs = sessionAttrs(source)
	}
	if attrs == "read-only" {
		attrs = AttrsStandby // only a server in recovery is read-only for replication's purposes
	}
	switch attrs {
	case AttrsAny, AttrsReadWrite, AttrsPrimary, AttrsStandby, AttrsPreferStandby:
	default:
		return nil, fmt.Errorf("%w: target_session_attrs=%s: tidemark understands any, read-write, primary, standby, prefer-standby", errPermanent, attrs)
	}
	hosts := splitHosts(base)
	if len(hosts) == 1 && attrs == AttrsAny {
		// Nothing to choose: no ordinary connection, which the role may not
		// be allowed (pg_hba.conf may have only a replication line).
		// Standby is then read from the replication connection (StandbyOf).
		return &Server{Addr: hostAddr(hosts[0]), cfg: hosts[0]}, nil
	}
	var fallback *Server
	var errs []error
	for _, h := range hosts {
		s, err := probe(ctx, h)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.Multi = len(hosts) > 1
		switch {
		case attrs == AttrsAny || attrs == AttrsStandby && s.Standby || (attrs == AttrsPrimary || attrs == AttrsReadWrite) && !s.Standby:
			return s, nil
		case attrs == AttrsPreferStandby && s.Standby:
			return s, nil
		case attrs == AttrsPreferStandby && fallback == nil:
			fallback = s
		default:
			role := "a primary"
			if s.Standby {
				role = "a standby"
			}
			errs = append(errs, fmt.Errorf("%s is %s", s.Addr, role))
		}
	}
	if fallback != nil {
		return fallback, nil
	}
	if len(hosts) == 1 && len(errs) == 1 {
		if pe := (*pgconn.PgError)(nil); errors.As(errs[0], &pe) {
			return nil, errs[0] // the caller explains server refusals (connectError)
		}
	}
	// Not wrapped: while a failover is under way no host may qualify, which
	// a later attempt can change (a server's refusal is permanent only
	// when it is the one host).
	return nil, fmt.Errorf("no server of the source is usable with target_session_attrs=%s: %v", attrs, errors.Join(errs...))
}

// probe connects to one host and asks whether it is in recovery.
func probe(ctx context.Context, cfg *pgconn.Config) (*Server, error) {
	s := &Server{Addr: hostAddr(cfg), cfg: cfg}
	conn, err := pgconn.ConnectConfig(ctx, cfg.Copy())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Addr, err)
	}
	defer conn.Close(context.Background())
	res, err := conn.Exec(ctx, "SELECT pg_is_in_recovery()").ReadAll()
	if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
		return nil, fmt.Errorf("%s: SELECT pg_is_in_recovery(): %v", s.Addr, err)
	}
	s.Standby = string(res[0].Rows[0][0]) == "t"
	return s, nil
}

func hostAddr(cfg *pgconn.Config) string {
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// StandbyOf reports whether the server a replication connection talks to
// is in recovery, from what it reports at connect (in_hot_standby, 14+);
// servers before 14 are taken for primaries unless Resolve probed them.
func (s *Server) StandbyOf(conn *pgconn.PgConn) bool {
	return s.Standby || conn.ParameterStatus("in_hot_standby") == "on"
}

// splitHosts turns a parsed config into one config per host, in order,
// each keeping only its own TLS fallbacks (sslmode=prefer tries TLS, then
// plain) and no session check.
func splitHosts(base *pgconn.Config) []*pgconn.Config {
	all := append([]*pgconn.FallbackConfig{{Host: base.Host, Port: base.Port, TLSConfig: base.TLSConfig}}, base.Fallbacks...)
	var out []*pgconn.Config
	index := map[string]int{}
	for _, f := range all {
		key := net.JoinHostPort(f.Host, strconv.Itoa(int(f.Port)))
		if i, ok := index[key]; ok {
			out[i].Fallbacks = append(out[i].Fallbacks, f)
			continue
		}
		c := base.Copy()
		c.Host, c.Port, c.TLSConfig, c.Fallbacks = f.Host, f.Port, f.TLSConfig, nil
		c.ValidateConnect = nil
		index[key] = len(out)
		out = append(out, c)
	}
	return out
}

// sessionAttrs is the source's target_session_attrs ("any" when unset):
// pgconn turns it into a check function, so it is read from the text.
func sessionAttrs(source string) string {
	for _, sep := range []string{"?", "&", " "} {
		if i := strings.Index(source, sep+"target_session_attrs="); i >= 0 {
			v := source[i+len(sep+"target_session_attrs="):]
			if j := strings.IndexAny(v, "& "); j >= 0 {
				v = v[:j]
			}
			return strings.Trim(v, "'")
		}
	}
	if strings.HasPrefix(source, "target_session_attrs=") {
		v, _, _ := strings.Cut(strings.TrimPrefix(source, "target_session_attrs="), " ")
		return strings.Trim(v, "'")
	}
	if v := os.Getenv("PGTARGETSESSIONATTRS"); v != "" {
		return v
	}
	return AttrsAny
}
