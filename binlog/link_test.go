package binlog

import (
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
)

// blackhole forwards TCP connections to a server; after cut, the
// connections open at that moment stay open but carry nothing either way,
// like a network path that died without a reset. New connections work.
type blackhole struct {
	ln   net.Listener
	gen  atomic.Int64
	addr string
}

func newBlackhole(t *testing.T, target string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, addr: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			gen := b.gen.Load()
			go b.pipe(c, s, gen)
			go b.pipe(s, c, gen)
		}
	}()
	return b
}

func (b *blackhole) pipe(from, to net.Conn, gen int64) {
	defer from.Close()
	defer to.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if err != nil {
			return
		}
		if b.gen.Load() != gen {
			continue // swallowed
		}
		if _, err := to.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (b *blackhole) cut() { b.gen.Add(1) }

// TestSilentLinkIsDetected: a replication link that goes silent (no
// heartbeats arrive) is dropped after three heartbeat periods and
// re-established; events written meanwhile are archived.
func TestSilentLinkIsDetected(t *testing.T) {
	db := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	f := newFixture(t, db)
	bh := newBlackhole(t, db.Addr())
	host, port, _ := net.SplitHostPort(bh.ln.Addr().String())
	p, _ := strconv.Atoi(port)
	cfg := f.config()
	cfg.Source.Host, cfg.Source.Port = host, uint16(p)
	cfg.Heartbeat = 200 * time.Millisecond
	stop, _ := f.stream(cfg)
	c := f.conn()
	exec(t, c, "CREATE DATABASE s")
	f.waitDurable(streamOf(db), masterPos(t, db))
	bh.cut()
	exec(t, c, "CREATE TABLE s.t (id INT PRIMARY KEY)", "INSERT INTO s.t VALUES (1)")
	f.waitDurable(streamOf(db), masterPos(t, db))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	f.compareWithServer(streamOf(db))
}
