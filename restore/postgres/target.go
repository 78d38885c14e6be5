package postgres

import "time"

// Target is where recovery stops. Exactly one field is set.
type Target struct {
	Latest bool
	Time   time.Time
	LSN    string
	XID    string
	Name   string
}

func (t Target) String() string {
	switch {
	case t.Latest:
		return "latest"
	case !t.Time.IsZero():
		return "time " + FormatTime(t.Time)
	case t.LSN != "":
		return "lsn " + t.LSN
	case t.XID != "":
		return "xid " + t.XID
	default:
		return "restore point " + t.Name
	}
}

// FormatTime formats t as PostgreSQL's recovery_target_time expects:
// it rejects RFC 3339's "Z", so the offset is always numeric.
func FormatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05.000000") + "+00"
}
