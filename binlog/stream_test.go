package binlog

import (
	"testing"

	"github.com/tidemark/tidemark/internal/testenv"
)

func TestStreamMatchesServerBinlog(t *testing.T) {
	db := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	f := newFixture(t, db)
	stop, _ := f.stream(f.config())
	c := f.conn()
	exec(t, c, "CREATE DATABASE shop", "CREATE TABLE shop.items (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100), price DECIMAL(10,2), note TEXT)",
		"INSERT INTO shop.items (name, price) VALUES ('a', 1.50), ('b', 2.25)",
		"BEGIN", "INSERT INTO shop.items (name, price) VALUES ('c', 3)", "UPDATE shop.items SET note = REPEAT('x', 5000) WHERE id = 1",
		"DELETE FROM shop.items WHERE id = 2", "COMMIT",
		"ALTER TABLE shop.items ADD COLUMN qty INT DEFAULT 7", "FLUSH BINARY LOGS",
		"INSERT INTO shop.items (name, price, qty) VALUES ('d', 4, 1)")
	f.waitDurable(streamOf(db), masterPos(t, c))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	n := f.compareWithServer(streamOf(db))
	t.Logf("%d events identical", n)
	if n < 20 {
		t.Fatalf("only %d events archived", n)
	}
}

// TestStreamResumes: stopping and restarting the streamer, and restarting
// the server under it, leave no gap and no duplicate.
func TestStreamResumes(t *testing.T) {
	db := testenv.NewMariaDB(t, testenv.MariaDBOptions{})
	f := newFixture(t, db)
	c := f.conn()
	exec(t, c, "CREATE DATABASE d", "CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(20))")
	stop, _ := f.stream(f.config())
	exec(t, c, "INSERT INTO d.t VALUES (1, 'a')")
	f.waitDurable(streamOf(db), masterPos(t, c))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	exec(t, c, "INSERT INTO d.t VALUES (2, 'b')", "INSERT INTO d.t VALUES (3, 'c')")
	stop, _ = f.stream(f.config())
	exec(t, c, "INSERT INTO d.t VALUES (4, 'd')")
	f.waitDurable(streamOf(db), masterPos(t, c))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	n := f.compareWithServer(streamOf(db))
	t.Logf("%d events identical", n)
}
