package basebackup

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/wal"
)

var slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// PostgresConfig configures a PostgreSQL base backup.
type PostgresConfig struct {
	Repo           *archive.Repository
	Source         string // postgres:// URL (password from ~/.pgpass, PGPASSFILE, PGPASSWORD)
	Slot           string // the streamer's slot: held before the backup so its WAL stays
	Type           string // full, incremental, differential (see docs: all deduplicated)
	FastCheckpoint bool
	Jobs           int
	Log            *slog.Logger
	// Progress, when set, is called as data arrives (done and total bytes).
	Progress func(done, total int64)
	// WALTimeout bounds the wait for a running streamer to archive the
	// backup's WAL.
	WALTimeout time.Duration
}

// PostgresMeta is the engine part of a PostgreSQL backup's manifest.
type PostgresMeta struct {
	SystemID       string            `json:"system_identifier"`
	ServerVersion  string            `json:"server_version"`
	Label          string            `json:"label"`
	StartLSN       string            `json:"start_lsn"`
	StartTimeline  uint32            `json:"start_timeline"`
	StopLSN        string            `json:"stop_lsn"`
	StopTimeline   uint32            `json:"stop_timeline"`
	WALSegmentSize uint64            `json:"wal_segment_size"`
	Tablespaces    []TablespaceEntry `json:"tablespaces,omitempty"`
	// WALArchivedBy says who made start..stop durable: "streamer" or "backup".
	WALArchivedBy string `json:"wal_archived_by"`
}

// TablespaceEntry is a tablespace as BASE_BACKUP reported it.
type TablespaceEntry struct {
	OID      string `json:"oid"`
	Location string `json:"location"`
}

// BackupResult summarises a committed backup.
type BackupResult struct {
	Manifest *archive.Manifest
	Meta     PostgresMeta
}

// Postgres takes a base backup over the replication protocol and commits it
// to the repository once the WAL it needs is archived.
func Postgres(ctx context.Context, cfg PostgresConfig) (*BackupResult, error) {
	if cfg.Jobs < 1 {
		cfg.Jobs = 4
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.WALTimeout == 0 {
		cfg.WALTimeout = 5 * time.Minute
	}
	if !slotName.MatchString(cfg.Slot) {
		return nil, fmt.Errorf("slot name %q: want 1-63 of a-z, 0-9, _", cfg.Slot)
	}
	pcfg, err := pgconn.ParseConfig(withReplication(cfg.Source))
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	// The backup arrives as ~32 KiB messages; reading the socket 1 MiB at a
	// time instead of pgproto3's 8 KiB saves most of the read syscalls.
	pcfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return pgproto3.NewFrontend(bufio.NewReaderSize(r, 1<<20), w)
	}
	conn, err := pgconn.ConnectConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	src, err := wal.Identify(ctx, conn, cfg.Repo)
	if err != nil {
		return nil, err
	}
	if err := holdWAL(ctx, conn, cfg); err != nil {
		return nil, err
	}
	w, err := cfg.Repo.NewChunkWriter(ctx, cfg.Jobs)
	if err != nil {
		return nil, err
	}
	defer w.Abort() // packs still open after a failure leave nothing behind
	started := time.Now().UTC()
	label := "tidemark " + archive.NewManifestID(started)
	bb := &baseBackup{cfg: cfg, conn: conn, chunks: w}
	meta, files, err := bb.run(ctx, label)
	if err != nil {
		return nil, err
	}
	meta.SystemID, meta.Label, meta.WALSegmentSize = src.SystemID, label, src.Geometry.SegSize
	meta.ServerVersion = conn.ParameterStatus("server_version")
	if err := w.Commit(ctx); err != nil {
		return nil, err
	}
	startLSN, _ := pglogrepl.ParseLSN(meta.StartLSN)
	stopLSN, _ := pglogrepl.ParseLSN(meta.StopLSN)
	by, err := ensureWAL(ctx, cfg, src.Geometry, meta.StopTimeline, startLSN, stopLSN)
	if err != nil {
		return nil, fmt.Errorf("backup taken but not restorable: the WAL up to %s is not archived: %w", meta.StopLSN, err)
	}
	meta.WALArchivedBy = by
	em, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	m := &archive.Manifest{ID: archive.NewManifestID(started), Engine: "postgres", Type: cfg.Type,
		Started: started, Finished: time.Now().UTC(), Start: meta.StartLSN, Stop: meta.StopLSN, Files: files, Stats: w.Stats(), EngineMeta: em}
	if err := cfg.Repo.CommitManifest(ctx, m); err != nil {
		return nil, err
	}
	return &BackupResult{Manifest: m, Meta: meta}, nil
}

func withReplication(source string) string {
	sep := "?"
	if strings.Contains(source, "?") {
		sep = "&"
	}
	return source + sep + "replication=true&application_name=tidemark_backup"
}

// holdWAL makes sure the streamer's slot exists before the backup starts, so
// the server keeps the WAL from the backup's start LSN until it is archived.
func holdWAL(ctx context.Context, conn *pgconn.PgConn, cfg PostgresConfig) error {
	res, err := conn.Exec(ctx, "READ_REPLICATION_SLOT "+cfg.Slot).ReadAll()
	if err != nil {
		return fmt.Errorf("READ_REPLICATION_SLOT %s: %w", cfg.Slot, err)
	}
	if len(res) == 1 && len(res[0].Rows) == 1 && res[0].Rows[0][0] != nil {
		return nil
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE_REPLICATION_SLOT %s PHYSICAL RESERVE_WAL", cfg.Slot)).ReadAll(); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42710" {
			return nil // a streamer created it meanwhile
		}
		return fmt.Errorf("create replication slot %s: %w", cfg.Slot, err)
	}
	cfg.Log.Info("created physical replication slot to hold the backup's WAL; run `tidemark stream` with it", "slot", cfg.Slot)
	return nil
}

// baseBackup drives one BASE_BACKUP command.
type baseBackup struct {
	cfg    PostgresConfig
	conn   *pgconn.PgConn
	chunks *archive.ChunkWriter
	total  int64
	done   int64
}

func (b *baseBackup) run(ctx context.Context, label string) (PostgresMeta, []archive.FileEntry, error) {
	var meta PostgresMeta
	checkpoint := "spread"
	if b.cfg.FastCheckpoint {
		checkpoint = "fast"
	}
	sql := fmt.Sprintf("BASE_BACKUP (LABEL '%s', PROGRESS, CHECKPOINT '%s', WAIT false, MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', TABLESPACE_MAP)",
		strings.ReplaceAll(label, "'", "''"), checkpoint)
	b.conn.Frontend().SendQuery(&pgproto3.Query{String: sql})
	if err := b.conn.Frontend().Flush(); err != nil {
		return meta, nil, fmt.Errorf("send BASE_BACKUP: %w", err)
	}
	// Result 1: start position.
	rows, err := b.resultSet(ctx)
	if err != nil {
		return meta, nil, fmt.Errorf("BASE_BACKUP start: %w", err)
	}
	if len(rows) != 1 || len(rows[0]) < 2 {
		return meta, nil, fmt.Errorf("BASE_BACKUP start: unexpected result %q", rows)
	}
	meta.StartLSN = string(rows[0][0])
	tli, _ := strconv.ParseUint(string(rows[0][1]), 10, 32)
	meta.StartTimeline = uint32(tli)
	// Result 2: tablespaces; the data directory comes last, with no oid.
	rows, err = b.resultSet(ctx)
	if err != nil {
		return meta, nil, fmt.Errorf("BASE_BACKUP tablespaces: %w", err)
	}
	for _, r := range rows {
		if size, err := strconv.ParseInt(string(r[2]), 10, 64); err == nil {
			b.total += size * 1024 // PROGRESS sizes are in kB
		}
		if len(r[0]) > 0 {
			meta.Tablespaces = append(meta.Tablespaces, TablespaceEntry{OID: string(r[0]), Location: string(r[1])})
		}
	}
	files, err := b.archives(ctx)
	if err != nil {
		return meta, nil, err
	}
	// Result 3: end position.
	rows, err = b.resultSet(ctx)
	if err != nil {
		return meta, nil, fmt.Errorf("BASE_BACKUP end: %w", err)
	}
	if len(rows) != 1 || len(rows[0]) < 2 {
		return meta, nil, fmt.Errorf("BASE_BACKUP end: unexpected result")
	}
	meta.StopLSN = string(rows[0][0])
	tli, _ = strconv.ParseUint(string(rows[0][1]), 10, 32)
	meta.StopTimeline = uint32(tli)
	if err := b.finish(ctx); err != nil {
		return meta, nil, err
	}
	return meta, files, nil
}

// resultSet reads one result set's rows up to its CommandComplete.
func (b *baseBackup) resultSet(ctx context.Context) ([][][]byte, error) {
	var rows [][][]byte
	for {
		msg, err := b.conn.ReceiveMessage(ctx)
		if err != nil {
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.RowDescription, *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		case *pgproto3.DataRow:
			row := make([][]byte, len(m.Values))
			for i, v := range m.Values {
				if v != nil {
					row[i] = append([]byte{}, v...)
				}
			}
			rows = append(rows, row)
		case *pgproto3.CommandComplete:
			return rows, nil
		case *pgproto3.ErrorResponse:
			return nil, pgconn.ErrorResponseToPgError(m)
		default:
			return nil, fmt.Errorf("unexpected %T", msg)
		}
	}
}

// archives reads the single COPY OUT stream of typed messages PostgreSQL
// 15+ sends: 'n' starts a tablespace's tar archive, 'd' carries data, 'p'
// reports progress, 'm' starts the backup manifest. Each archive is consumed
// concurrently as it streams, never staged whole.
func (b *baseBackup) archives(ctx context.Context) ([]archive.FileEntry, error) {
	for {
		msg, err := b.conn.ReceiveMessage(ctx)
		if err != nil {
			return nil, err
		}
		if _, ok := msg.(*pgproto3.CopyOutResponse); ok {
			break
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			return nil, pgconn.ErrorResponseToPgError(e)
		}
	}
	var (
		files []archive.FileEntry
		cur   *consumer
	)
	finish := func() error {
		if cur == nil {
			return nil
		}
		got, err := cur.close()
		cur = nil
		files = append(files, got...)
		return err
	}
	for {
		msg, err := b.conn.ReceiveMessage(ctx)
		if err != nil {
			if cur != nil {
				cur.abort(err)
			}
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case 'n':
				if err := finish(); err != nil {
					return nil, err
				}
				name, _, _ := strings.Cut(string(m.Data[1:]), "\x00")
				prefix := ""
				if oid, ok := strings.CutSuffix(name, ".tar"); ok && oid != "base" {
					prefix = "pg_tblspc/" + oid + "/"
				}
				cur = b.consume(ctx, func(r io.Reader) ([]archive.FileEntry, error) { return b.storeTar(ctx, r, prefix) })
			case 'm':
				if err := finish(); err != nil {
					return nil, err
				}
				cur = b.consume(ctx, func(r io.Reader) ([]archive.FileEntry, error) { return b.storeManifest(ctx, r) })
			case 'd':
				if cur == nil {
					return nil, errors.New("BASE_BACKUP: data before any archive")
				}
				if err := cur.write(m.Data[1:]); err != nil {
					return nil, err
				}
				b.done += int64(len(m.Data) - 1)
				if b.cfg.Progress != nil {
					b.cfg.Progress(b.done, b.total)
				}
			case 'p':
			default:
				return nil, fmt.Errorf("BASE_BACKUP: unknown message type %q (a server older than PostgreSQL 15?)", m.Data[0])
			}
		case *pgproto3.CopyDone:
			return files, finish()
		case *pgproto3.ErrorResponse:
			err := pgconn.ErrorResponseToPgError(m)
			if cur != nil {
				cur.abort(err)
			}
			return nil, err
		}
	}
}

// consumer runs one archive's consumer on a pipe.
type consumer struct {
	pw   *io.PipeWriter
	done chan consumed
}

type consumed struct {
	files []archive.FileEntry
	err   error
}

func (b *baseBackup) consume(ctx context.Context, fn func(io.Reader) ([]archive.FileEntry, error)) *consumer {
	pr, pw := io.Pipe()
	c := &consumer{pw: pw, done: make(chan consumed, 1)}
	go func() {
		files, err := fn(pr)
		if err == nil {
			_, err = io.Copy(io.Discard, pr) // tar padding after the end marker
		}
		pr.CloseWithError(err)
		c.done <- consumed{files, err}
	}()
	return c
}

func (c *consumer) write(p []byte) error {
	if _, err := c.pw.Write(p); err != nil {
		res := <-c.done
		c.done <- res
		if res.err != nil {
			return res.err
		}
		return err
	}
	return nil
}

func (c *consumer) close() ([]archive.FileEntry, error) {
	c.pw.Close()
	res := <-c.done
	return res.files, res.err
}

func (c *consumer) abort(err error) {
	c.pw.CloseWithError(err)
	<-c.done
}

// storeManifest keeps PostgreSQL's backup_manifest as a file of the backup,
// so pg_verifybackup can check a restored directory.
func (b *baseBackup) storeManifest(ctx context.Context, r io.Reader) ([]archive.FileEntry, error) {
	refs, err := b.chunks.WriteFile(ctx, r, archive.ContentDefined)
	if err != nil {
		return nil, fmt.Errorf("store backup_manifest: %w", err)
	}
	var size int64
	for _, c := range refs {
		size += int64(c.Size)
	}
	return []archive.FileEntry{{Path: "backup_manifest", Size: size, Mode: 0o600, ModTime: time.Now().UTC(), Chunks: refs}}, nil
}

// storeTar stores every file of one tablespace's tar archive as chunks.
func (b *baseBackup) storeTar(ctx context.Context, r io.Reader, prefix string) ([]archive.FileEntry, error) {
	tr := tar.NewReader(r)
	var files []archive.FileEntry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read backup tar: %w", err)
		}
		f := archive.FileEntry{Path: prefix + strings.TrimSuffix(h.Name, "/"), Size: h.Size,
			Mode: uint32(h.FileInfo().Mode()), ModTime: h.ModTime.UTC()}
		switch h.Typeflag {
		case tar.TypeDir:
		case tar.TypeSymlink:
			f.Link = h.Linkname
		case tar.TypeReg:
			// Relation files never shift their blocks: fixed offsets make a
			// changed page change exactly one chunk.
			refs, err := b.chunks.WriteFile(ctx, tr, archive.Aligned)
			if err != nil {
				return nil, fmt.Errorf("store %s: %w", f.Path, err)
			}
			f.Chunks = refs
		default:
			return nil, fmt.Errorf("backup tar: %s has unsupported type %q", h.Name, h.Typeflag)
		}
		files = append(files, f)
	}
}

// finish reads the command's completion.
func (b *baseBackup) finish(ctx context.Context) error {
	for {
		msg, err := b.conn.ReceiveMessage(ctx)
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.ReadyForQuery:
			return nil
		case *pgproto3.ErrorResponse:
			return pgconn.ErrorResponseToPgError(m)
		}
	}
}

// ensureWAL waits until the repository holds the WAL up to stop on tli:
// from a running streamer (its slot is active), or by streaming that range
// itself. It says which.
func ensureWAL(ctx context.Context, cfg PostgresConfig, g wal.Geometry, tli uint32, start, stop pglogrepl.LSN) (string, error) {
	reached := func() (bool, error) {
		st, err := wal.LoadState(ctx, cfg.Repo.Store(), g)
		if err != nil {
			return false, err
		}
		for _, tl := range st.Timelines {
			if tl.TLI >= tli && tl.End >= stop {
				return true, nil
			}
		}
		return false, nil
	}
	if ok, err := reached(); ok || err != nil {
		return "streamer", err
	}
	active, err := slotActive(ctx, cfg)
	if err != nil {
		return "", err
	}
	if active {
		cfg.Log.Info("waiting for the running streamer to archive the backup's WAL", "stop_lsn", stop)
		deadline := time.Now().Add(cfg.WALTimeout)
		for time.Now().Before(deadline) {
			if ok, err := reached(); ok || err != nil {
				return "streamer", err
			}
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
		return "", fmt.Errorf("the streamer on slot %s did not archive up to %s within %s", cfg.Slot, stop, cfg.WALTimeout)
	}
	cfg.Log.Info("no streamer is running: archiving the backup's WAL range itself", "stop_lsn", stop)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var got bool
	err = wal.Stream(sctx, wal.Config{Repo: cfg.Repo, Source: cfg.Source, Slot: cfg.Slot, FlushInterval: 200 * time.Millisecond, StartAt: start,
		Log: cfg.Log, Progress: func(p wal.Progress) {
			if p.TLI >= tli && p.Durable >= stop {
				got = true
				cancel()
			}
		}})
	if err != nil {
		return "", err
	}
	if !got {
		return "", ctx.Err()
	}
	return "backup", nil
}

// slotActive reports whether a streamer is connected on the slot.
func slotActive(ctx context.Context, cfg PostgresConfig) (bool, error) {
	conn, err := pgconn.Connect(ctx, cfg.Source)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	res, err := conn.Exec(ctx, fmt.Sprintf("SELECT active FROM pg_replication_slots WHERE slot_name = '%s'", cfg.Slot)).ReadAll()
	if err != nil {
		return false, fmt.Errorf("read slot %s: %w", cfg.Slot, err)
	}
	return len(res) == 1 && len(res[0].Rows) == 1 && string(res[0].Rows[0][0]) == "t", nil
}
