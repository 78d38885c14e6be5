package wal

import (
	"bytes"
	"context"
	"fmt"

	"github.com/tidemark/tidemark/archive"
)

// Switch is a timeline switch recorded in an archived history file: From
// ended at At and To began there (a promotion, a failover).
type Switch struct {
	From, To uint32
	At       LSN
}

func (s Switch) String() string {
	return fmt.Sprintf("timeline %d → %d at %s", s.From, s.To, s.At)
}

// Switches reads the newest archived history file, which lists every
// switch that led to its timeline. None without history files; it needs
// the repository's key (history files are encrypted like WAL).
func Switches(ctx context.Context, repo *archive.Repository, st *State) ([]Switch, error) {
	if len(st.Histories) == 0 {
		return nil, nil
	}
	newest := st.Histories[0]
	for _, t := range st.Histories {
		newest = max(newest, t)
	}
	var buf bytes.Buffer
	if err := Fetch(ctx, repo, st.Geometry, HistoryFileName(newest), &buf); err != nil {
		return nil, fmt.Errorf("read %s: %w", HistoryFileName(newest), err)
	}
	h, err := parseHistory(buf.Bytes(), newest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", HistoryFileName(newest), err)
	}
	var out []Switch
	for i := 0; i+1 < len(h); i++ {
		out = append(out, Switch{From: h[i].tli, To: h[i+1].tli, At: h[i].end})
	}
	return out, nil
}
