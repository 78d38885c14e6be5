package mysql

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/binlog"
)

// TestReplayedAttrs: a replay that applied nothing (a drill to its base's
// own point) logs no zero time; one that did logs its last commit.
func TestReplayedAttrs(t *testing.T) {
	from := binlog.Position{File: "mysql-bin.000001", Pos: 4}
	nothing := fmt.Sprint(replayedAttrs(from, &BinlogReplayResult{End: from}))
	if strings.Contains(nothing, "0001-01-01") || strings.Contains(nothing, "last_commit") {
		t.Fatalf("empty replay logs %s", nothing)
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	some := fmt.Sprint(replayedAttrs(from, &BinlogReplayResult{End: from, Transactions: 3, LastTime: at, LastGTID: "0-1-9"}))
	if !strings.Contains(some, "last_commit 2026-12-01 10:00:00") || !strings.Contains(some, "0-1-9") {
		t.Fatalf("replay logs %s", some)
	}
}
