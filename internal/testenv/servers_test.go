package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestMain(m *testing.M) { Main(m) }

func TestPostgreSQL(t *testing.T) {
	p := PostgreSQL(t)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for setting, want := range map[string]string{"wal_level": "replica", "data_checksums": "on", "server_version_num": "15"} {
		var got string
		if err := c.QueryRow(ctx, "SELECT current_setting($1)", setting).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got, want) {
			t.Errorf("%s = %s, want %s", setting, got, want)
		}
	}
	rc, err := pgconn.Connect(ctx, p.ReplicationURL())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close(ctx)
	res, err := rc.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0][0]) == 0 {
		t.Fatalf("IDENTIFY_SYSTEM returned %+v", res)
	}
}

func TestPostgreSQLKillAndRestart(t *testing.T) {
	p := NewPostgreSQL(t, PostgresOptions{})
	p.Exec(t, "CREATE TABLE survives (x int); INSERT INTO survives VALUES (42)")
	p.Kill()
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var x int
	if err := c.QueryRow(ctx, "SELECT x FROM survives").Scan(&x); err != nil || x != 42 {
		t.Fatalf("after crash recovery: %d, %v", x, err)
	}
}

func TestMariaDB(t *testing.T) {
	m := MariaDBServer(t)
	c, err := m.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for name, want := range map[string]string{"log_bin": "ON", "binlog_format": "ROW", "version": "10.11"} {
		r, err := c.Execute("SHOW VARIABLES LIKE '" + name + "'")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := r.GetString(0, 1)
		if !strings.HasPrefix(got, want) {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	r, err := c.Execute("SHOW MASTER STATUS")
	if err != nil {
		t.Fatal(err)
	}
	if file, _ := r.GetString(0, 0); !strings.HasPrefix(file, "mysql-bin.") {
		t.Fatalf("binlog file = %q", file)
	}
}

func TestFerretDBWritesOplog(t *testing.T) {
	f := FerretDBServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := f.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(ctx)
	if _, err := c.Database("shop").Collection("orders").InsertOne(ctx, bson.D{{Key: "item", Value: "kettle"}}); err != nil {
		t.Fatal(err)
	}
	n, err := c.Database("local").Collection("oplog.rs").CountDocuments(ctx, bson.D{{Key: "ns", Value: "shop.orders"}, {Key: "op", Value: "i"}})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("oplog holds %d insert entries for shop.orders, want 1", n)
	}
}

func TestFakeGCS(t *testing.T) {
	g := FakeGCSServer(t)
	if b := g.NewBucket(t); !strings.HasPrefix(b, "tm-") {
		t.Fatalf("bucket %q", b)
	}
}

// TestPostgreSQLMajors starts a server of every major the tests use: each
// reports its own version and runs with data checksums.
func TestPostgreSQLMajors(t *testing.T) {
	for _, major := range PostgresMajors {
		t.Run(fmt.Sprint(major), func(t *testing.T) {
			p := NewPostgreSQL(t, PostgresOptions{Major: major})
			ctx := context.Background()
			c, err := pgx.Connect(ctx, p.URL("postgres"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			var num int
			var checksums string
			if err := c.QueryRow(ctx, "SELECT current_setting('server_version_num')::int, current_setting('data_checksums')").Scan(&num, &checksums); err != nil {
				t.Fatal(err)
			}
			if num/10000 != major || p.Major != major || checksums != "on" {
				t.Fatalf("server_version_num %d, Major %d, data_checksums %s; want major %d with checksums", num, p.Major, checksums, major)
			}
		})
	}
}
