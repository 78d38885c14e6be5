package wal

import (
	"errors"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/archive"
)

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]Version{
		"15.18 (Debian 15.18-0+deb12u1)": {15, 18},
		"17.10":                          {17, 10},
		"18beta1":                        {18, 0},
		"13.23":                          {13, 23},
	} {
		if got, err := ParseVersion(in); err != nil || got != want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseVersion("devel"); err == nil {
		t.Error("ParseVersion(devel) succeeded")
	}
}

// TestVersionDifferences: what differs between majors is decided here, once.
func TestVersionDifferences(t *testing.T) {
	for _, major := range []int{12, 19, 9} {
		err := Version{Major: major}.Check()
		if !errors.Is(err, ErrUnsupportedVersion) || !errors.Is(err, archive.ErrMisconfigured) || !strings.Contains(err.Error(), "supports PostgreSQL 13 to 18") {
			t.Errorf("major %d: %v", major, err)
		}
	}
	for major := MinMajor; major <= MaxMajor; major++ {
		v := Version{Major: major}
		if err := v.Check(); err != nil {
			t.Errorf("major %d refused: %v", major, err)
		}
		if v.HasReadReplicationSlot() != (major >= 15) || v.NewBaseBackup() != (major >= 15) || v.HasIncremental() != (major >= 17) {
			t.Errorf("major %d: READ_REPLICATION_SLOT %v, new BASE_BACKUP %v, INCREMENTAL %v", major,
				v.HasReadReplicationSlot(), v.NewBaseBackup(), v.HasIncremental())
		}
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"15.18 (Debian 15.18-0+deb12u1)", "18beta1", "17.10", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err == nil && (v.Major < 0 || v.Minor < 0) {
			t.Fatalf("%q: %v", s, v)
		}
	})
}
