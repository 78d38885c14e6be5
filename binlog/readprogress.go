package binlog

// Progress is how far the reader is through the archive it plans to read:
// the events it has passed (applied, or skipped before the base) and the
// events the segments up to the target hold. With a time target the
// segments whose first event is after it are not counted; with a position
// or GTID target the total is the whole chain, an upper bound.
func (r *Reader) Progress() (done, total int64) {
	for i, s := range r.plan.segments {
		if !r.to.Time.IsZero() && i > 0 && s.FirstTime.After(r.to.Time) {
			break
		}
		total += s.Events
		switch {
		case i < r.segIdx:
			done += s.Events
		case i == r.segIdx && r.seg != nil:
			done += int64(r.evIdx)
		}
	}
	return min(done, total), total
}
