package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/restore"
)

// streamMySQL archives a MySQL/MariaDB binlog under the stream-mysql lock,
// so two streamers never write one repository. The password, if any, comes
// with the URL from TIDEMARK_SOURCE (engineOf refuses it on the command
// line).
func (a *app) streamMySQL(ctx context.Context, rf *repoFlags, source, password string, serverID uint32, flushInterval time.Duration,
	progress func(binlog.Progress)) error {
	src, err := binlog.ParseSource(source)
	if err != nil {
		return usageErr(err)
	}
	if password != "" {
		src.Password = password
	}
	r, err := rf.open(ctx, false)
	if err != nil {
		return err
	}
	cfg := binlog.Config{Repo: r, Source: src, ServerID: serverID, FlushInterval: flushInterval, Log: a.log,
		Progress: func(p binlog.Progress) {
			a.log.Debug("binlog durable", "stream", p.Stream, "position", p.Durable.String(), "event_time", p.EventTime, "caught_up", p.CaughtUp)
			if progress != nil {
				progress(p)
			}
		}}
	err = r.WithLock(ctx, "stream-mysql", archive.LockOptions{Purpose: "tidemark stream (MySQL/MariaDB binlog)"}, func(ctx context.Context) error {
		return binlog.Stream(ctx, cfg)
	})
	if errors.Is(err, binlog.ErrGap) {
		return fmt.Errorf("%w: %w", restore.ErrGap, err) // exit 6, like a WAL gap
	}
	if errors.Is(err, binlog.ErrCorrupt) {
		return fmt.Errorf("%w: %w", archive.ErrCorrupt, err)
	}
	return err
}

// binlogStatus is the MySQL part of `status`: per stream, the archived
// range (positions, GTIDs, files, event times), how old its newest event
// is, and any break. Built from the unencrypted index: no key needed.
type binlogStatus struct {
	binlog.StreamSummary
	StartGTID    string  `json:"start_gtid,omitempty"`
	EndGTID      string  `json:"end_gtid,omitempty"`
	LastEventAge float64 `json:"last_event_age_seconds"`
}

// mysqlStatus returns the binlog streams' status, nil when there are none.
func mysqlStatus(ctx context.Context, r *archive.Repository) ([]binlogStatus, error) {
	sums, err := binlog.Summarize(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("binlog status: %w", err)
	}
	var out []binlogStatus
	for _, s := range sums {
		st := binlogStatus{StreamSummary: s}
		if p, err := binlog.ParsePosition(s.Start); err == nil {
			st.StartGTID = p.GTID
		}
		if p, err := binlog.ParsePosition(s.End); err == nil {
			st.EndGTID = p.GTID
		}
		if !s.LastTime.IsZero() {
			st.LastEventAge = time.Since(s.LastTime).Seconds()
		}
		out = append(out, st)
	}
	return out, nil
}

// printMySQLStatus is the text form of mysqlStatus.
func printMySQLStatus(w io.Writer, sts []binlogStatus) {
	for _, s := range sts {
		fmt.Fprintf(w, "binlog      %s: %s – %s, %d files (%s … %s), %d events, %s – %s\n", s.Stream, s.Start, s.End,
			len(s.Files), first(s.Files), last(s.Files), s.Events, s.FirstTime.UTC().Format(time.RFC3339), s.LastTime.UTC().Format(time.RFC3339))
		for _, b := range s.Breaks {
			fmt.Fprintf(w, "GAP         %s\n", b)
		}
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// verifyMySQLStream reads back every binlog segment (event checksums,
// positions, counts against the index) and reports breaks in the streams,
// as problems for verify's report.
func verifyMySQLStream(ctx context.Context, r *archive.Repository) ([]string, error) {
	_, problems, err := binlog.Verify(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("verify binlog: %w", err)
	}
	out := make([]string, 0, len(problems))
	for _, p := range problems {
		out = append(out, "binlog: "+p.Error())
	}
	return out, nil
}
