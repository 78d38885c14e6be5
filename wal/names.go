package wal

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
)

// LSN is a PostgreSQL WAL position.
type LSN = pglogrepl.LSN

// Layout in the repository (docs/format.md, "PostgreSQL WAL"):
//
//	wal/<tli 8hex>/<segment file name>                         a complete segment
//	wal/<tli 8hex>/<segment file name>.part-<from 8hex>-<to 8hex>  bytes [from,to) of a
//	                                                           segment still filling
//	wal/history/<tli 8hex>.history                             timeline history file
const (
	walPrefix     = "wal/"
	historyPrefix = "wal/history/"
	partSep       = ".part-"
)

// Geometry is a cluster's WAL segment size.
type Geometry struct{ SegSize uint64 }

func (g Geometry) segsPerID() uint64 { return 0x100000000 / g.SegSize }

// SegNo is the segment number holding lsn.
func (g Geometry) SegNo(lsn LSN) uint64 { return uint64(lsn) / g.SegSize }

// SegStart is the first LSN of segment segno.
func (g Geometry) SegStart(segno uint64) LSN { return LSN(segno * g.SegSize) }

// FileName is PostgreSQL's name for a segment on a timeline.
func (g Geometry) FileName(tli uint32, segno uint64) string {
	return fmt.Sprintf("%08X%08X%08X", tli, segno/g.segsPerID(), segno%g.segsPerID())
}

// ParseFileName parses a segment file name.
func (g Geometry) ParseFileName(name string) (tli uint32, segno uint64, err error) {
	if len(name) != 24 {
		return 0, 0, fmt.Errorf("not a WAL segment name: %q", name)
	}
	t, err1 := strconv.ParseUint(name[:8], 16, 32)
	hi, err2 := strconv.ParseUint(name[8:16], 16, 32)
	lo, err3 := strconv.ParseUint(name[16:], 16, 32)
	if err1 != nil || err2 != nil || err3 != nil || lo >= g.segsPerID() {
		return 0, 0, fmt.Errorf("not a WAL segment name: %q", name)
	}
	return uint32(t), hi*g.segsPerID() + lo, nil
}

func tliDir(tli uint32) string { return fmt.Sprintf("%s%08X/", walPrefix, tli) }

func (g Geometry) segmentObject(tli uint32, segno uint64) string {
	return tliDir(tli) + g.FileName(tli, segno)
}

func (g Geometry) partObject(tli uint32, segno uint64, from, to uint64) string {
	return fmt.Sprintf("%s%s%08X-%08X", g.segmentObject(tli, segno), partSep, from, to)
}

func historyObject(tli uint32) string { return fmt.Sprintf("%s%08X.history", historyPrefix, tli) }

// HistoryFileName is PostgreSQL's name for a timeline history file.
func HistoryFileName(tli uint32) string { return fmt.Sprintf("%08X.history", tli) }

// objectName is a parsed object name under wal/<tli>/.
type objectName struct {
	tli      uint32
	segno    uint64
	part     bool
	from, to uint64 // byte offsets within the segment, for parts
}

func (g Geometry) parseObject(name string) (objectName, bool) {
	rest, ok := strings.CutPrefix(name, walPrefix)
	if !ok || strings.HasPrefix(rest, "history/") {
		return objectName{}, false
	}
	dir, file, ok := strings.Cut(rest, "/")
	if !ok || len(dir) != 8 {
		return objectName{}, false
	}
	seg, part, isPart := strings.Cut(file, partSep)
	tli, segno, err := g.ParseFileName(seg)
	if err != nil || fmt.Sprintf("%08X", tli) != dir {
		return objectName{}, false
	}
	o := objectName{tli: tli, segno: segno, part: isPart}
	if isPart {
		f, t, ok := strings.Cut(part, "-")
		from, err1 := strconv.ParseUint(f, 16, 64)
		to, err2 := strconv.ParseUint(t, 16, 64)
		if !ok || err1 != nil || err2 != nil || from >= to || to > g.SegSize {
			return objectName{}, false
		}
		o.from, o.to = from, to
	}
	// Only the canonical spelling (upper-case, fixed width) is ours.
	canon := g.segmentObject(o.tli, o.segno)
	if o.part {
		canon = g.partObject(o.tli, o.segno, o.from, o.to)
	}
	return o, canon == name
}

func parseLSN(s string) (LSN, error) { return pglogrepl.ParseLSN(s) }

// ParseLSN reads an LSN written as PostgreSQL prints it (0/3000028).
func ParseLSN(s string) (LSN, error) { return parseLSN(s) }
