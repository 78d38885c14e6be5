package postgres

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/wal"
)

// baseBackup drives one BASE_BACKUP command.
type baseBackup struct {
	cfg     Config
	conn    *pgconn.PgConn
	chunks  *archive.ChunkWriter
	version wal.Version
	// incremental: the reference's manifest is uploaded; send INCREMENTAL.
	incremental bool
	total       int64
	done        int64
}

// command is the BASE_BACKUP command in the server's syntax: an option
// list from 15, bare keywords before.
func (b *baseBackup) command(label string) string {
	label = strings.ReplaceAll(label, "'", "''")
	if !b.version.NewBaseBackup() {
		fast := ""
		if b.cfg.FastCheckpoint {
			fast = " FAST"
		}
		return fmt.Sprintf("BASE_BACKUP LABEL '%s' PROGRESS%s NOWAIT MANIFEST 'yes' MANIFEST_CHECKSUMS 'CRC32C' TABLESPACE_MAP", label, fast)
	}
	checkpoint := "spread"
	if b.cfg.FastCheckpoint {
		checkpoint = "fast"
	}
	incremental := ""
	if b.incremental {
		incremental = ", INCREMENTAL"
	}
	return fmt.Sprintf("BASE_BACKUP (LABEL '%s', PROGRESS, CHECKPOINT '%s', WAIT false, MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', TABLESPACE_MAP%s)",
		label, checkpoint, incremental)
}

func (b *baseBackup) run(ctx context.Context, label string) (Meta, []archive.FileEntry, error) {
	var meta Meta
	b.total, b.done = 0, 0 // a second run after a refused incremental starts over
	b.conn.Frontend().SendQuery(&pgproto3.Query{String: b.command(label)})
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
	b.cfg.Log.Debug("BASE_BACKUP started: checkpoint done", "start_lsn", meta.StartLSN, "incremental", b.incremental)
	tli, _ := strconv.ParseUint(string(rows[0][1]), 10, 32)
	meta.StartTimeline = uint32(tli)
	// Result 2: tablespaces; the data directory comes last, with no oid.
	rows, err = b.resultSet(ctx)
	if err != nil {
		return meta, nil, fmt.Errorf("BASE_BACKUP tablespaces: %w", err)
	}
	b.cfg.Log.Debug("BASE_BACKUP tablespaces listed")
	var order []string // the archives' path prefixes, in the order they come
	for _, r := range rows {
		if size, err := strconv.ParseInt(string(r[2]), 10, 64); err == nil {
			b.total += size * 1024 // PROGRESS sizes are in kB
		}
		if len(r[0]) > 0 {
			meta.Tablespaces = append(meta.Tablespaces, TablespaceEntry{OID: string(r[0]), Location: string(r[1])})
			order = append(order, "pg_tblspc/"+string(r[0])+"/")
		} else {
			order = append(order, "")
		}
	}
	var files []archive.FileEntry
	if b.version.NewBaseBackup() {
		files, err = b.archives(ctx)
	} else {
		files, err = b.legacyArchives(ctx, order)
	}
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
	b.cfg.Log.Debug("BASE_BACKUP data received", "stop_lsn", meta.StopLSN, "bytes", b.done)
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
// reports progress, 'm' starts the backup manifest. Each archive is stored
// as it streams, never staged whole.
func (b *baseBackup) archives(ctx context.Context) ([]archive.FileEntry, error) {
	if err := b.awaitCopyOut(ctx); err != nil {
		return nil, err
	}
	var (
		files []archive.FileEntry
		msg   pgproto3.BackendMessage
	)
	for {
		if msg == nil {
			var err error
			if msg, err = b.conn.ReceiveMessage(ctx); err != nil {
				return nil, err
			}
		}
		var store func(io.Reader) ([]archive.FileEntry, error)
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				break
			}
			switch m.Data[0] {
			case 'n':
				name, _, _ := strings.Cut(string(m.Data[1:]), "\x00")
				prefix := ""
				if oid, ok := strings.CutSuffix(name, ".tar"); ok && oid != "base" {
					prefix = "pg_tblspc/" + oid + "/"
				}
				store = func(r io.Reader) ([]archive.FileEntry, error) { return b.storeTar(ctx, r, prefix) }
			case 'm':
				store = func(r io.Reader) ([]archive.FileEntry, error) { return b.storeManifest(ctx, r) }
			case 'd':
				return nil, errors.New("BASE_BACKUP: data before any archive")
			case 'p':
			default:
				return nil, fmt.Errorf("BASE_BACKUP: unknown message type %q (a server older than PostgreSQL 15?)", m.Data[0])
			}
		case *pgproto3.CopyDone:
			return files, nil
		case *pgproto3.ErrorResponse:
			return nil, pgconn.ErrorResponseToPgError(m)
		}
		msg = nil
		if store == nil {
			continue
		}
		s := b.stream(ctx, true)
		got, err := store(s)
		if err := s.finish(err); err != nil {
			return nil, err
		}
		files = append(files, got...)
		msg = s.next
	}
}

// legacyArchives reads what servers before 15 send: one COPY OUT of raw
// tar per tablespace, in the order of the tablespace list (prefixes), then
// one holding the backup manifest.
func (b *baseBackup) legacyArchives(ctx context.Context, prefixes []string) ([]archive.FileEntry, error) {
	var files []archive.FileEntry
	for i := 0; i <= len(prefixes); i++ {
		store := func(r io.Reader) ([]archive.FileEntry, error) { return b.storeManifest(ctx, r) }
		if i < len(prefixes) {
			prefix := prefixes[i]
			store = func(r io.Reader) ([]archive.FileEntry, error) { return b.storeTar(ctx, r, prefix) }
		}
		if err := b.awaitCopyOut(ctx); err != nil {
			return nil, err
		}
		s := b.stream(ctx, false)
		got, err := store(s)
		if err := s.finish(err); err != nil {
			return nil, err
		}
		files = append(files, got...)
	}
	return files, nil
}

// awaitCopyOut reads up to the start of a COPY OUT.
func (b *baseBackup) awaitCopyOut(ctx context.Context) error {
	for {
		msg, err := b.conn.ReceiveMessage(ctx)
		if err != nil {
			return err
		}
		if _, ok := msg.(*pgproto3.CopyOutResponse); ok {
			return nil
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			return pgconn.ErrorResponseToPgError(e)
		}
	}
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
