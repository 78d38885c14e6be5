package wal

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tidemark/tidemark/archive"
)

// The one place that knows how a PostgreSQL cluster is identified and how
// its WAL geometry is recorded in the repository's source object.

const segSizeDetail = "wal_segment_size"

// Source is the server a replication connection talks to.
type Source struct {
	SystemID  string
	ServerTLI uint32
	XLogPos   LSN
	Geometry  Geometry
	Version   Version
}

// Identify reads the server's identity (IDENTIFY_SYSTEM, wal_segment_size)
// over a replication connection and binds the repository to that cluster,
// refusing another one.
func Identify(ctx context.Context, conn *pgconn.PgConn, repo *archive.Repository) (*Source, error) {
	v, err := ConnVersion(conn)
	if err != nil {
		return nil, err
	}
	if err := v.Check(); err != nil {
		return nil, err
	}
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("IDENTIFY_SYSTEM: %w", err)
	}
	res, err := conn.Exec(ctx, "SHOW wal_segment_size").ReadAll()
	if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
		return nil, fmt.Errorf("SHOW wal_segment_size: %v", err)
	}
	segSize, err := parseSize(string(res[0].Rows[0][0]))
	if err != nil {
		return nil, fmt.Errorf("wal_segment_size: %w", err)
	}
	bound, err := repo.BindSource(ctx, archive.Source{Engine: "postgres", ClusterID: sys.SystemID,
		Details: map[string]string{segSizeDetail: fmt.Sprint(segSize)}})
	if err != nil {
		return nil, err
	}
	if bound.Details[segSizeDetail] != fmt.Sprint(segSize) {
		return nil, fmt.Errorf("%w: wal_segment_size is %d, the repository was made with %s", errPermanent, segSize, bound.Details[segSizeDetail])
	}
	return &Source{SystemID: sys.SystemID, ServerTLI: uint32(sys.Timeline), XLogPos: sys.XLogPos, Geometry: Geometry{SegSize: segSize}, Version: v}, nil
}

// RepoGeometry is the WAL geometry of the cluster a repository holds;
// archive.ErrNotExist before the first stream or backup, an error if the
// repository holds another engine.
func RepoGeometry(ctx context.Context, repo *archive.Repository) (Geometry, error) {
	src, err := repo.Source(ctx)
	if err != nil {
		return Geometry{}, err
	}
	if src.Engine != "postgres" {
		return Geometry{}, fmt.Errorf("the repository holds %s, not PostgreSQL", src.Engine)
	}
	n, err := strconv.ParseUint(src.Details[segSizeDetail], 10, 64)
	if err != nil || n < 1<<20 || n&(n-1) != 0 {
		return Geometry{}, fmt.Errorf("source: %w: wal_segment_size %q", archive.ErrCorrupt, src.Details[segSizeDetail])
	}
	return Geometry{SegSize: n}, nil
}

// parseSize parses PostgreSQL's size display ("16MB", "1GB").
func parseSize(s string) (uint64, error) {
	units := []struct {
		suffix string
		mult   uint64
	}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		var n uint64
		if _, err := fmt.Sscanf(s, "%d"+u.suffix, &n); err == nil && fmt.Sprintf("%d%s", n, u.suffix) == s {
			if v := n * u.mult; v >= 1<<20 && v&(v-1) == 0 {
				return v, nil
			}
			return 0, fmt.Errorf("%q is not a power of two of at least 1MB", s)
		}
	}
	return 0, fmt.Errorf("cannot parse %q", s)
}
