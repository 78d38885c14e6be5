package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// FerretDB is a throwaway FerretDB (MongoDB wire protocol) server on
// 127.0.0.1 with the SQLite backend and a capped local.oplog.rs, which makes
// FerretDB write an oplog.
type FerretDB struct {
	Host string
	Port int

	dir  string
	proc *process
}

// OplogSize is the capped size of the test server's local.oplog.rs.
const OplogSize = 64 << 20

var sharedFerretDB shared[*FerretDB]

// FerretDBServer returns the package's shared server, starting it on first use.
func FerretDBServer(t testing.TB) *FerretDB {
	t.Helper()
	f, err := sharedFerretDB.get(func() (*FerretDB, func(), error) {
		f, err := StartFerretDB()
		if err != nil {
			return nil, nil, err
		}
		return f, f.Destroy, nil
	})
	if err != nil {
		Unavailable(t, "FerretDB "+FerretDBVersion, err)
	}
	return f
}

// NewFerretDB starts a separate server, destroyed when the test ends.
func NewFerretDB(t testing.TB) *FerretDB {
	t.Helper()
	f, err := StartFerretDB()
	if err != nil {
		Unavailable(t, "FerretDB "+FerretDBVersion, err)
	}
	t.Cleanup(f.Destroy)
	return f
}

// NewFerretDBDefault starts a separate server as FerretDB runs by default:
// no replica set name and no oplog — what a restore target usually is.
// It is destroyed when the test ends.
func NewFerretDBDefault(t testing.TB) *FerretDB {
	t.Helper()
	f, err := startFerretDB(false)
	if err != nil {
		Unavailable(t, "FerretDB "+FerretDBVersion, err)
	}
	t.Cleanup(f.Destroy)
	return f
}

// StartFerretDBDefault starts a server as FerretDB runs by default (no
// oplog); Destroy removes it.
func StartFerretDBDefault() (*FerretDB, error) { return startFerretDB(false) }

// StartFerretDB starts a server that writes an oplog; Destroy removes it.
func StartFerretDB() (*FerretDB, error) { return startFerretDB(true) }

func startFerretDB(oplog bool) (*FerretDB, error) {
	bin, err := CachedBinary("ferretdb", FerretDBVersion)
	if err != nil {
		return nil, err
	}
	dir, err := tempDir("tidemark-ferretdb-")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	debugPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		return nil, err
	}
	f := &FerretDB{Host: "127.0.0.1", Port: port, dir: dir}
	args := []string{"--handler=sqlite", "--sqlite-url=file:" + data + "/", "--state-dir=" + dir,
		fmt.Sprintf("--listen-addr=127.0.0.1:%d", port), fmt.Sprintf("--debug-addr=127.0.0.1:%d", debugPort),
		"--telemetry=disable", "--log-level=warn"}
	if oplog {
		args = append(args, "--repl-set-name=rs0")
	}
	proc, err := startProcess("FerretDB", filepath.Join(dir, "ferretdb.log"), nil, nil, bin, args...)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	f.proc = proc
	if err := proc.waitReady(func(ctx context.Context) error {
		c, err := f.Client(ctx)
		if err != nil {
			return err
		}
		defer c.Disconnect(ctx)
		return c.Ping(ctx, nil)
	}); err != nil {
		f.Destroy()
		return nil, err
	}
	if !oplog {
		return f, nil
	}
	if err := f.createOplog(); err != nil {
		f.Destroy()
		return nil, proc.failure(err)
	}
	return f, nil
}

func (f *FerretDB) createOplog() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := f.Client(ctx)
	if err != nil {
		return err
	}
	defer c.Disconnect(ctx)
	opts := options.CreateCollection().SetCapped(true).SetSizeInBytes(OplogSize)
	if err := c.Database("local").CreateCollection(ctx, "oplog.rs", opts); err != nil {
		return fmt.Errorf("create capped local.oplog.rs: %w", err)
	}
	return nil
}

// URL is a mongodb:// URL for the server (a direct connection: FerretDB
// reports a replica set name but has no members to discover).
func (f *FerretDB) URL() string {
	return fmt.Sprintf("mongodb://%s:%d/?directConnection=true", f.Host, f.Port)
}

// Client connects a driver client.
func (f *FerretDB) Client(ctx context.Context) (*mongo.Client, error) {
	return mongo.Connect(options.Client().ApplyURI(f.URL()).SetTimeout(30 * time.Second))
}

// PID is the server process's id (for measuring its CPU).
func (f *FerretDB) PID() int { return f.proc.cmd.Process.Pid }

// Stop shuts the server down.
func (f *FerretDB) Stop() {
	if f.proc != nil {
		f.proc.stop(syscall.SIGTERM, 20*time.Second)
	}
}

// Destroy stops the server and removes its files.
func (f *FerretDB) Destroy() {
	f.Stop()
	os.RemoveAll(f.dir)
}
