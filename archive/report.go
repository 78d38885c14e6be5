package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Reports record verify and drill results: `reports/<job>/<unixnano 016x>`,
// JSON, unencrypted so that status and the agent read them without a key.
// They hold outcomes, counts and durations; never names or data from the
// database (details go to logs and alerts).
const reportPrefix = "reports/"

// PutReport stores v as the newest report of job ("verify", "drill").
func (r *Repository) PutReport(ctx context.Context, job string, at time.Time, v any) error {
	b, err := jsonMarshal(v)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%s%s/%016x", reportPrefix, job, at.UnixNano())
	if _, err := r.Put(ctx, name, KindReport, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("store %s report: %w", job, err)
	}
	return nil
}

// LatestReport decodes the newest report of job into v; false if none.
func (r *Repository) LatestReport(ctx context.Context, job string, v any) (bool, error) {
	var last string
	if err := r.store.List(ctx, reportPrefix+job+"/", "", func(o ObjectInfo) error {
		last = o.Name
		return nil
	}); err != nil {
		return false, fmt.Errorf("list %s reports: %w", job, err)
	}
	if last == "" {
		return false, nil
	}
	b, err := r.ReadAll(ctx, last, KindReport)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", last, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("report %s: %w", last, ErrCorrupt)
	}
	return true, nil
}
