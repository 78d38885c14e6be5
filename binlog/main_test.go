package binlog

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/tidemark/tidemark/archive"
	"github.com/tidemark/tidemark/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type fixture struct {
	t    *testing.T
	db   *testenv.MariaDB
	dir  string
	repo *archive.Repository
	keys archive.Keys
}

func newFixture(t *testing.T, db *testenv.MariaDB) *fixture {
	t.Helper()
	r := testenv.NewRepo(t)
	return &fixture{t: t, db: db, dir: r.Dir, repo: r.Repository, keys: r.Keys}
}

func (f *fixture) config() Config {
	return Config{Repo: f.repo, Source: Source{Host: f.db.Host, Port: uint16(f.db.Port), User: f.db.User, Password: f.db.Password},
		FlushInterval: 100 * time.Millisecond, Heartbeat: time.Second, Log: slog.New(slog.NewTextHandler(testWriter{f.t}, nil))}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

// stream runs Stream in the background; stop cancels it and returns its error.
func (f *fixture) stream(cfg Config) (stop func() error, done <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- Stream(ctx, cfg) }()
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-ch:
			case <-time.After(60 * time.Second):
				err = fmt.Errorf("streamer did not stop")
			}
		})
		return err
	}, ch
}

func (f *fixture) conn() *client.Conn {
	f.t.Helper()
	c, err := f.db.Conn()
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	return c
}

func exec(t *testing.T, c *client.Conn, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := c.Execute(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// masterPos is the server's current binlog end.
func masterPos(t *testing.T, db *testenv.MariaDB) Position {
	t.Helper()
	file, pos := db.BinlogEnd(t)
	return Position{File: file, Pos: pos}
}

// waitDurable waits until the archive holds the binlog up to p.
func (f *fixture) waitDurable(stream string, p Position) {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		chain, err := f.repo.ReadStream(context.Background(), stream)
		if err != nil {
			f.t.Fatal(err)
		}
		if last, ok := chain.Last(); ok {
			end, err := ParsePosition(last.End)
			if err != nil {
				f.t.Fatal(err)
			}
			if !end.before(Position{File: p.File, Pos: p.Pos}) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.t.Fatalf("archive did not reach %s", p)
}

func streamOf(db *testenv.MariaDB) string { return fmt.Sprintf("%s%010d", StreamPrefix, db.ServerID) }

// archivedFiles returns, per binlog file, the archived events.
func (f *fixture) archivedFiles(stream string) (map[string][]Event, map[string][]byte) {
	f.t.Helper()
	ctx := context.Background()
	chain, err := f.repo.ReadStream(ctx, stream)
	if err != nil {
		f.t.Fatal(err)
	}
	if len(chain.Breaks) > 0 {
		f.t.Fatalf("archive has breaks: %v", chain.Breaks)
	}
	events := map[string][]Event{}
	headers := map[string][]byte{}
	for _, s := range chain.Segments {
		seg, err := readSegment(ctx, f.repo, s)
		if err != nil {
			f.t.Fatal(err)
		}
		events[s.Group] = append(events[s.Group], seg.Events...)
		headers[s.Group] = seg.Format.Raw
	}
	return events, headers
}

// serverFiles reads the server's binlog files from its data directory.
func serverFiles(t *testing.T, dataDir string) map[string][]Event {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dataDir, "mysql-bin.[0-9]*"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	out := map[string][]Event{}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, fileMagic) {
			t.Fatalf("%s: no binlog magic", n)
		}
		rest := b[4:]
		for len(rest) > 0 {
			var e Event
			e, rest, err = nextEvent(rest)
			if err != nil {
				t.Fatalf("%s: %v", n, err)
			}
			out[filepath.Base(n)] = append(out[filepath.Base(n)], e)
		}
	}
	return out
}

// compareWithServer checks that the archive holds exactly the server's
// binlog events, byte for byte, for every archived file.
func (f *fixture) compareWithServer(stream string) int {
	f.t.Helper()
	arch, _ := f.archivedFiles(stream)
	srv := serverFiles(f.t, f.db.DataDir)
	n := 0
	for file, evs := range arch {
		want := srv[file]
		if len(want) == 0 {
			f.t.Fatalf("archived file %s is not on the server", file)
		}
		want = want[1:] // the format description is the segments' header
		if len(evs) != len(want) {
			f.t.Fatalf("%s: %d archived events, the server's file has %d", file, len(evs), len(want))
		}
		for i := range evs {
			if !bytes.Equal(evs[i].Raw, want[i].Raw) {
				f.t.Fatalf("%s: event %d (%s at %d) differs from the server's (%s at %d)", file, i, evs[i].Type, evs[i].Start(), want[i].Type, want[i].Start())
			}
		}
		n += len(evs)
	}
	for file := range srv {
		if _, ok := arch[file]; !ok {
			f.t.Fatalf("server file %s is not archived", file)
		}
	}
	return n
}
