package binlog

import (
	"strings"
	"testing"
)

func TestParseSources(t *testing.T) {
	srcs, err := ParseSources("mysql://u:pw@db1:3307,db2,[::1]:3309/")
	if err != nil {
		t.Fatal(err)
	}
	want := []Source{{Host: "db1", Port: 3307, User: "u", Password: "pw"}, {Host: "db2", Port: 3306, User: "u", Password: "pw"},
		{Host: "::1", Port: 3309, User: "u", Password: "pw"}}
	if len(srcs) != len(want) {
		t.Fatalf("parsed %+v, want %+v", srcs, want)
	}
	for i := range want {
		if srcs[i] != want[i] {
			t.Errorf("host %d: %+v, want %+v", i, srcs[i], want[i])
		}
	}
	if addrs(srcs) != "db1:3307,db2:3306,[::1]:3309" {
		t.Errorf("addrs %q", addrs(srcs))
	}
	if _, err := ParseSource("mysql://u@db1,db2/"); err == nil || !strings.Contains(err.Error(), "2 hosts") {
		t.Errorf("one-server parse of two hosts: %v, want refused", err)
	}
	if s, err := ParseSource("mariadb://u@/"); err != nil || s.Host != "127.0.0.1" || s.Port != 3306 {
		t.Errorf("default host: %+v %v", s, err)
	}
	for _, bad := range []string{"mysql://u@db1:0,db2/", "mysql://db1,db2/", "postgres://u@db1/", "mysql://u@db1:x/"} {
		if _, err := ParseSources(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// FuzzParseSources: any string is parsed or refused, never a panic, and
// every parsed server has a user and a port.
func FuzzParseSources(f *testing.F) {
	for _, s := range []string{"mysql://u:pw@db1:3307,db2,[::1]:3309/", "mariadb://u@/", "mysql://u@a,,b/x", "mysql://@,", "://,@"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		srcs, err := ParseSources(raw)
		if err != nil {
			return
		}
		for _, s := range srcs {
			if s.User == "" || s.Port == 0 || s.Host == "" {
				t.Fatalf("%q parsed as %+v", raw, s)
			}
		}
	})
}
