package binlog

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/tidemark/tidemark/archive"
)

// A MariaDB replication cluster has no identity of its own: a primary and
// its replicas have different server ids and host names, and share only
// their GTID history (every transaction keeps the domain-server-seq it was
// given on the server that ran it). The repository stays bound to the
// server it was first bound to (its recorded cluster id); another MariaDB
// server is a member of that cluster when its GTID history is the
// archive's (docs/format.md, "Binlog segments").

// Bind binds the repository to the server's cluster on first use, or
// checks that the server is the bound one or a member of its cluster. It
// returns the recorded source; id must come from Identify.
func Bind(ctx context.Context, repo *archive.Repository, id *Identity) (*archive.Source, error) {
	if id.si == nil {
		return nil, fmt.Errorf("bind repository: the identity was not read from a server (use Identify)")
	}
	return bind(ctx, repo, id.si)
}

func bind(ctx context.Context, repo *archive.Repository, si *serverInfo) (*archive.Source, error) {
	details := map[string]string{"version": si.Version, "hostname": si.Hostname, "server_id": fmt.Sprint(si.ServerID)}
	if si.MariaDB {
		// What later members are checked against when no binlog is
		// archived yet (a repository holding only base backups).
		details["gtid_binlog_state"], details["gtid_slave_pos"] = si.GTIDState, si.SlavePos
	}
	src := archive.Source{Engine: "mysql", ClusterID: si.clusterID(), Details: details}
	bound, err := repo.BindSource(ctx, src)
	if err == nil || !errors.Is(err, archive.ErrSourceMismatch) || !si.MariaDB {
		return bound, err
	}
	cur, rerr := repo.Source(ctx)
	if rerr != nil {
		return nil, rerr
	}
	if cur.Engine != "mysql" || !strings.HasPrefix(cur.ClusterID, "mariadb-") {
		return nil, err
	}
	if merr := member(ctx, repo, cur, si); merr != nil {
		return nil, merr
	}
	return cur, nil
}

// member checks that a MariaDB server other than the bound one shares the
// archive's GTID history: for every domain, the newest GTID the archive
// knows (over every binlog stream's end, and the state recorded at the
// first bind) must come from an origin server the server's history has
// too (gtid_binlog_state lists the last GTID per domain and origin;
// gtid_slave_pos what it applied as a replica). A server behind the
// archive in a domain is accepted only as a replica (lagging); anything
// else behind it, or without that origin, has another history.
func member(ctx context.Context, repo *archive.Repository, bound *archive.Source, si *serverInfo) error {
	ref, err := archivedState(ctx, repo, bound)
	if err != nil {
		return err
	}
	foreign := func(why string) error {
		return fmt.Errorf("%w: it holds MariaDB cluster %s, the server %s (server id %d) %s (its gtid_binlog_state %q, gtid_slave_pos %q)",
			archive.ErrSourceMismatch, bound.ClusterID, si.Hostname, si.ServerID, why, si.GTIDState, si.SlavePos)
	}
	if len(ref) == 0 {
		return foreign("cannot be matched: the repository records no GTID state of its cluster")
	}
	hist, err := si.history()
	if err != nil {
		return err
	}
	for _, d := range ref.domains() {
		g := ref[d]
		seq, ok := hist[origin{d, g.Server}]
		switch {
		case !ok:
			return foreign(fmt.Sprintf("has no GTID of domain %d from server %d, whose %s the archive holds: it is not a member of that cluster", d, g.Server, g))
		case seq < g.Seq && !si.Replica:
			return foreign(fmt.Sprintf("is at %d-%d-%d, behind the archived %s, and is not a replica: its history is not the archived one", d, g.Server, seq, g))
		}
	}
	return nil
}

// origin is a GTID domain and the server that originated its GTIDs.
type origin struct{ domain, server uint32 }

// history is the server's GTID history: the highest sequence number per
// domain and origin server, over its binlog and its replica position.
func (si *serverInfo) history() (map[origin]uint64, error) {
	h := map[origin]uint64{}
	for _, list := range []string{si.GTIDState, si.SlavePos} {
		for _, part := range strings.Split(list, ",") {
			if part = strings.TrimSpace(part); part == "" {
				continue
			}
			g, err := ParseMariaGTID(part)
			if err != nil {
				return nil, fmt.Errorf("server GTID state %q: %w", list, err)
			}
			if o := (origin{g.Domain, g.Server}); g.Seq > h[o] {
				h[o] = g.Seq
			}
		}
	}
	return h, nil
}

// archivedState is the newest GTID per domain the repository knows of its
// cluster: every binlog stream's end, and the state recorded at bind.
func archivedState(ctx context.Context, repo *archive.Repository, bound *archive.Source) (MariaState, error) {
	ref := MariaState{}
	for _, k := range []string{"gtid_binlog_state", "gtid_slave_pos"} {
		if err := ref.mergeList(bound.Details[k]); err != nil {
			return nil, fmt.Errorf("repository source %s: %s: %w", bound.ClusterID, k, err)
		}
	}
	names, err := repo.Streams(ctx, StreamPrefix)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		chain, err := repo.ReadStream(ctx, n)
		if err != nil {
			return nil, err
		}
		last, ok := chain.Last()
		if !ok {
			continue
		}
		end, err := ParsePosition(last.End)
		if err != nil {
			return nil, fmt.Errorf("stream %s ends at an unreadable position: %w", n, err)
		}
		if err := ref.mergeList(end.GTID); err != nil {
			return nil, fmt.Errorf("stream %s end %s: %w", n, last.End, err)
		}
	}
	return ref, nil
}

// mergeList raises the state to every GTID of a domain-server-seq list
// that is newer in its domain (a list may name a domain once per origin).
func (st MariaState) mergeList(list string) error {
	for _, part := range strings.Split(list, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		g, err := ParseMariaGTID(part)
		if err != nil {
			return err
		}
		if cur, ok := st[g.Domain]; !ok || g.Seq > cur.Seq {
			st[g.Domain] = g
		}
	}
	return nil
}

func (st MariaState) domains() []uint32 {
	ds := make([]uint32, 0, len(st))
	for d := range st {
		ds = append(ds, d)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds
}
