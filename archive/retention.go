package archive

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Policy says which base backups to keep. A backup is kept when any rule
// keeps it; the newest backup is always kept. Periods are UTC calendar
// days, ISO weeks, months and years; a rule keeps the newest backup of each
// of its N most recent periods that have one (as restic's forget does).
type Policy struct {
	KeepLast    int           `yaml:"keep_last" json:"keep_last,omitempty"`
	KeepDaily   int           `yaml:"keep_daily" json:"keep_daily,omitempty"`
	KeepWeekly  int           `yaml:"keep_weekly" json:"keep_weekly,omitempty"`
	KeepMonthly int           `yaml:"keep_monthly" json:"keep_monthly,omitempty"`
	KeepYearly  int           `yaml:"keep_yearly" json:"keep_yearly,omitempty"`
	Window      time.Duration `yaml:"pitr_window" json:"pitr_window,omitempty"`
}

// Empty reports a policy with no rule: applying it would keep only the
// newest backup, which is never what someone who forgot to configure
// retention means, so callers refuse it.
func (p Policy) Empty() bool {
	return p.KeepLast <= 0 && p.KeepDaily <= 0 && p.KeepWeekly <= 0 && p.KeepMonthly <= 0 && p.KeepYearly <= 0 && p.Window <= 0
}

func (p Policy) String() string {
	var parts []string
	add := func(name string, n int) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", name, n))
		}
	}
	add("last", p.KeepLast)
	add("daily", p.KeepDaily)
	add("weekly", p.KeepWeekly)
	add("monthly", p.KeepMonthly)
	add("yearly", p.KeepYearly)
	if p.Window > 0 {
		parts = append(parts, "point-in-time window "+FormatDuration(p.Window))
	}
	return strings.Join(parts, ", ")
}

// Decision is the policy's verdict on one backup.
type Decision struct {
	Backup  BackupSummary
	Keep    bool
	Reasons []string
}

// Apply decides for each backup (any order) and returns decisions newest
// first. The point-in-time window keeps every backup finished inside it
// and the newest one finished before it, the base any point early in the
// window is restored from.
func (p Policy) Apply(backups []BackupSummary, now time.Time) []Decision {
	ds := make([]Decision, len(backups))
	for i, b := range backups {
		ds[i] = Decision{Backup: b}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].Backup.Finished.After(ds[j].Backup.Finished) })
	keep := func(d *Decision, why string) {
		d.Keep = true
		d.Reasons = append(d.Reasons, why)
	}
	if len(ds) > 0 {
		keep(&ds[0], "newest")
	}
	for i := range ds {
		if i < p.KeepLast {
			keep(&ds[i], "last")
		}
	}
	buckets := []struct {
		name string
		n    int
		key  func(time.Time) string
	}{
		{"daily", p.KeepDaily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{"weekly", p.KeepWeekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) }},
		{"monthly", p.KeepMonthly, func(t time.Time) string { return t.Format("2006-01") }},
		{"yearly", p.KeepYearly, func(t time.Time) string { return t.Format("2006") }},
	}
	for _, b := range buckets {
		last, kept := "", 0
		for i := range ds {
			if kept >= b.n {
				break
			}
			if k := b.key(ds[i].Backup.Finished.UTC()); k != last {
				last = k
				kept++
				keep(&ds[i], b.name+" "+k)
			}
		}
	}
	if p.Window > 0 {
		start := now.Add(-p.Window)
		for i := range ds {
			if ds[i].Backup.Finished.After(start) {
				keep(&ds[i], "inside the point-in-time window")
				continue
			}
			keep(&ds[i], "base of the point-in-time window")
			break
		}
	}
	keepDependencies(ds, keep)
	return ds
}

// keepDependencies keeps every backup a kept backup depends on, through
// whole chains: expiring one would leave the kept backup unrestorable.
// ds is newest first and a backup depends only on older ones, so one pass
// in that order reaches the end of every chain.
func keepDependencies(ds []Decision, keep func(*Decision, string)) {
	byID := make(map[string]*Decision, len(ds))
	for i := range ds {
		byID[ds[i].Backup.ID] = &ds[i]
	}
	for i := range ds {
		if !ds[i].Keep {
			continue
		}
		for _, dep := range ds[i].Backup.DependsOn {
			if d, ok := byID[dep]; ok && !d.Keep {
				keep(d, "needed by "+ds[i].Backup.ID)
			}
		}
	}
}

// FormatDuration prints whole days as "14d", the way policies are written.
func FormatDuration(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// ParseDuration accepts Go durations plus days and weeks ("14d", "2w").
func ParseDuration(s string) (time.Duration, error) {
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			var v int
			if _, err := fmt.Sscanf(n, "%d", &v); err == nil && fmt.Sprint(v) == n && v >= 0 {
				return time.Duration(v) * unit, nil
			}
			return 0, fmt.Errorf("duration %q: want e.g. 14d, 2w, 36h", s)
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("duration %q: want e.g. 14d, 2w, 36h", s)
	}
	return d, nil
}
