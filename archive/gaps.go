package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// A gap record says a stream could not continue without losing history:
// written by the streamer that found it, shown by status, never deleted by
// anything but a user. Unencrypted: it holds positions, not data.
const gapPrefix = "gaps/"

// GapRecord is one detected gap.
type GapRecord struct {
	Engine   string    `json:"engine"`
	Detected time.Time `json:"detected"`
	From     string    `json:"from"` // last archived position
	To       string    `json:"to,omitempty"`
	Reason   string    `json:"reason"`
}

// RecordGap stores g so status shows it.
func (r *Repository) RecordGap(ctx context.Context, g GapRecord) error {
	b, err := jsonMarshal(g)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%s%s-%016x", gapPrefix, g.Engine, g.Detected.UnixNano())
	_, err = r.Put(ctx, name, KindGap, bytes.NewReader(b))
	return err
}

// Gaps returns the recorded gaps, oldest first. A record that does not
// read back is still a gap someone recorded: it is returned with its
// engine from its name, "unknown" as its range and the damage as its
// reason, never dropped.
func (r *Repository) Gaps(ctx context.Context) ([]GapRecord, error) {
	var names []string
	if err := r.store.List(ctx, gapPrefix, "", func(o ObjectInfo) error {
		names = append(names, o.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list gaps: %w", err)
	}
	var out []GapRecord
	for _, n := range names {
		b, err := r.ReadAll(ctx, n, KindGap)
		var g GapRecord
		if err == nil {
			if jerr := json.Unmarshal(b, &g); jerr != nil || !strings.HasPrefix(n, gapPrefix+g.Engine+"-") {
				err = fmt.Errorf("gap record %s: %w", n, ErrCorrupt)
			}
		}
		switch {
		case errors.Is(err, ErrCorrupt), errors.Is(err, ErrUnsupported):
			eng, _, _ := strings.Cut(strings.TrimPrefix(n, gapPrefix), "-")
			out = append(out, GapRecord{Engine: eng, From: "unknown", Reason: fmt.Sprintf("the gap record %s does not read back (%v)", n, err)})
		case err != nil:
			return nil, err
		default:
			out = append(out, g)
		}
	}
	return out, nil
}
