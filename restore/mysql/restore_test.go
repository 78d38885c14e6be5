package mysql

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/tidemark/tidemark/archive"
	mysqlbackup "github.com/tidemark/tidemark/basebackup/mysql"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/restore"
)

// mysqlRepo creates an encrypted repository.
func mysqlRepo(t *testing.T) *archive.Repository {
	t.Helper()
	return testenv.NewRepo(t).Repository
}

func mustExec(t *testing.T, c *client.Conn, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := c.Execute(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func connect(t *testing.T, m *testenv.MariaDB) *client.Conn {
	t.Helper()
	c, err := m.Conn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// tortureSchema creates a database with every column type, extreme
// values, NULLs, empty values, zero dates and multibyte text; a table big
// enough to be split into several key ranges; and views (one depending on
// another whose name sorts later), routines, a trigger and an event.
func tortureSchema(t *testing.T, c *client.Conn, db string) {
	mustExec(t, c, "SET SESSION sql_mode = ''", "SET NAMES utf8mb4", "SET time_zone = '+02:00'",
		"CREATE DATABASE "+db+" CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci", "USE "+db,
		`CREATE TABLE torture (
  id INT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT UNSIGNED, i INT, bi BIGINT, biu BIGINT UNSIGNED,
  f FLOAT, d DOUBLE, dec1 DECIMAL(65,30), dec2 DECIMAL(10,0) UNSIGNED,
  b1 BIT(1), b64 BIT(64), b13 BIT(13),
  c CHAR(10), vc VARCHAR(100) COLLATE utf8mb4_bin, vl VARCHAR(50) CHARACTER SET latin1, vb VARBINARY(20), bn BINARY(4),
  tx TEXT, bl BLOB, lb LONGBLOB,
  e ENUM('a','b','ü'), st SET('x','y','z'),
  j JSON, g GEOMETRY, p POINT,
  dt DATE, dtm DATETIME(6), dtm0 DATETIME, ts TIMESTAMP(3) NULL DEFAULT NULL, tm TIME(6), yr YEAR,
  gen INT AS (i + 1) VIRTUAL, gens BIGINT AS (tiu * 2) STORED,
  u UUID, ip INET6, KEY (vc), UNIQUE KEY (bi)
)`,
		`INSERT INTO torture (id, ti, tiu, si, mi, i, bi, biu, f, d, dec1, dec2, b1, b64, b13, c, vc, vl, vb, bn, tx, bl, lb, e, st, j, g, p, dt, dtm, dtm0, ts, tm, yr, u, ip) VALUES
 (1, -128, 0, -32768, 0, -2147483648, -9223372036854775808, 0, -3.4028234e38, -1.7976931348623157e308,
  '-99999999999999999999999999999999999.999999999999999999999999999999', 0, b'0', 0, b'0', '', '', '', '', 0x00000000, '', '', '', '', '', '{}',
  ST_GeomFromText('POINT(0 0)'), POINT(1, 2), '0000-00-00', '0000-00-00 00:00:00', '1000-01-01 00:00:00', '1970-01-01 00:00:01.000', '-838:59:59.000000', 1901,
  '00000000-0000-0000-0000-000000000000', '::'),
 (2, 127, 255, 32767, 16777215, 2147483647, 9223372036854775807, 18446744073709551615, 1.17549435e-38, 2.2250738585072014e-308,
  '99999999999999999999999999999999999.999999999999999999999999999999', 9999999999, b'1', 0xFFFFFFFFFFFFFFFF, b'1010101010101',
  'abc', 'héllo 𝄞 日本 ', _latin1 0x636166E9, 0x00FF0A0D5C2700, 0xDEADBEEF, REPEAT('ü', 20000), UNHEX(REPEAT('00FF', 30000)), UNHEX(REPEAT('0123456789ABCDEF', 300000)),
  'ü', 'x,z', '{"a": [1, 2.50, "é"], "b": null, "c": 1e400}', ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))', 4326), POINT(-1.5, 1e300),
  '9999-12-31', '9999-12-31 23:59:59.999999', '2024-02-29 12:34:56', '2038-01-19 03:14:07.999', '838:59:59.999999', 2155,
  'ffffffff-ffff-ffff-ffff-ffffffffffff', 'fe80::1'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 0, 1, -1, 1, -1, 1, 1, 0.1, -0.0, '0.000000000000000000000000000001', 1, b'1', 1, 1,
  ' ', ' ', ' ', 0x00, 0x01, ' ', 0x00, 0x0A, 'a', '', 'null', ST_GeomFromText('GEOMETRYCOLLECTION(POINT(1 1),LINESTRING(0 0,1 1))'), POINT(0, -0),
  '2000-02-00', '2000-00-00 10:00:00.5', '1970-01-01 00:00:00', '2001-02-03 04:05:06.007', '-00:00:00.000001', 0,
  '12345678-9abc-def0-1234-56789abcdef0', '::ffff:1.2.3.4')`,
		"CREATE TABLE big (id BIGINT PRIMARY KEY, v VARCHAR(100), n INT, KEY (n))",
		"INSERT INTO big SELECT seq, MD5(seq), seq % 97 FROM seq_1_to_5000",
		"CREATE TABLE child (id INT AUTO_INCREMENT PRIMARY KEY, big_id BIGINT NOT NULL, FOREIGN KEY (big_id) REFERENCES big (id))",
		"INSERT INTO child (big_id) SELECT seq FROM seq_1_to_50",
		"CREATE TABLE comp (a INT, b VARCHAR(10), c BLOB, PRIMARY KEY (a, b))",
		"INSERT INTO comp SELECT seq DIV 2, CONCAT('k', seq), NULL FROM seq_1_to_3000",
		"CREATE TABLE nopk (a INT, b VARCHAR(10))",
		"INSERT INTO nopk VALUES (1, 'x'), (1, 'x'), (NULL, NULL)",
		"ANALYZE TABLE torture, big, child, comp, nopk",
		"CREATE VIEW b_view AS SELECT id, n FROM big",
		"CREATE VIEW a_view AS SELECT id, n FROM b_view WHERE n > 10",
		"CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
		"CREATE PROCEDURE count_big(OUT c INT) SELECT COUNT(*) INTO c FROM big",
		// Fired during the load, it would change restored rows.
		"CREATE TRIGGER big_upper BEFORE INSERT ON big FOR EACH ROW SET NEW.v = UPPER(NEW.v)",
		"CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DISABLE DO DELETE FROM nopk WHERE a IS NULL",
	)
}

// digest hashes every table's rows (raw bytes, key order) and CHECKSUM
// TABLE EXTENDED, and lists the database's views, routines, triggers and
// events with their definitions.
func digest(t *testing.T, c *client.Conn, db string) map[string]string {
	t.Helper()
	mustExec(t, c, "SET NAMES binary", "SET time_zone = '+00:00'", "USE "+db)
	out := map[string]string{}
	r, err := c.Execute("SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", db)
	if err != nil {
		t.Fatal(err)
	}
	for i := range r.RowNumber() {
		name, _ := r.GetString(i, 0)
		typ, _ := r.GetString(i, 1)
		fq := "`" + db + "`.`" + name + "`"
		if typ == "VIEW" {
			out["view "+name] = string(showCreate(t, c, "VIEW", fq, 1))
			continue
		}
		rows, err := c.Execute("SELECT * FROM " + fq + " ORDER BY 1, 2")
		if err != nil {
			t.Fatal(err)
		}
		// Per column, so a difference names the column.
		for j, f := range rows.Fields {
			h := sha256.New()
			for _, row := range rows.Values {
				v := row[j]
				fmt.Fprintf(h, "%d:", v.Type)
				if v.Type == mysql.FieldValueTypeString {
					h.Write(v.AsString())
				} else {
					fmt.Fprint(h, v.Value())
				}
				h.Write([]byte{0})
			}
			out["column "+name+"."+string(f.Name)] = hex.EncodeToString(h.Sum(nil))[:16]
		}
		cs, err := c.Execute("CHECKSUM TABLE " + fq + " EXTENDED")
		if err != nil {
			t.Fatal(err)
		}
		sum, _ := cs.GetString(0, 1)
		out["table "+name] = fmt.Sprintf("%d rows checksum %s", rows.RowNumber(), sum)
		out["create "+name] = string(showCreate(t, c, "TABLE", fq, 1))
	}
	for _, q := range []struct{ kind, list string }{
		{"FUNCTION", "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_TYPE = 'FUNCTION' AND ROUTINE_SCHEMA = ?"},
		{"PROCEDURE", "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_TYPE = 'PROCEDURE' AND ROUTINE_SCHEMA = ?"},
		{"TRIGGER", "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?"},
		{"EVENT", "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?"},
	} {
		r, err := c.Execute(q.list, db)
		if err != nil {
			t.Fatal(err)
		}
		for i := range r.RowNumber() {
			name, _ := r.GetString(i, 0)
			col := 2
			if q.kind == "EVENT" {
				col = 3
			}
			out[strings.ToLower(q.kind)+" "+name] = string(showCreate(t, c, q.kind, "`"+db+"`.`"+name+"`", col))
		}
	}
	return out
}

func grants(t *testing.T, c *client.Conn, account string) string {
	t.Helper()
	r, err := c.Execute("SHOW GRANTS FOR " + account)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := range r.RowNumber() {
		g, _ := r.GetString(i, 0)
		out = append(out, g)
	}
	return strings.Join(out, "\n")
}

func showCreate(t *testing.T, c *client.Conn, kind, fq string, col int) []byte {
	t.Helper()
	r, err := c.Execute("SHOW CREATE " + kind + " " + fq)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := r.GetString(0, col)
	return []byte(v)
}

func compareDigests(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %s differs:\n got %q\nwant %q", what, k, got[k], w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected %s", what, k)
		}
	}
}

func backupMySQL(t *testing.T, repo *archive.Repository, src *testenv.MariaDB, dbs ...string) *mysqlbackup.Result {
	t.Helper()
	res, err := mysqlbackup.Backup(context.Background(), mysqlbackup.Config{Repo: repo, Source: src.URL(), Jobs: 3,
		Databases: dbs, PartRows: 1000})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	return res
}

// planOf is the plan for restoring a base without replay.
func planOf(t *testing.T, res *mysqlbackup.Result) *Plan {
	return &Plan{Backup: res.Manifest, Meta: res.Meta, From: res.Meta.Position()}
}

func TestMySQLBaseRoundTripExact(t *testing.T) {
	src := testenv.MariaDBServer(t)
	c := connect(t, src)
	tortureSchema(t, c, "torture1")
	mustExec(t, c, "CREATE USER 'app'@'10.0.0.%' IDENTIFIED BY 'app-pw'", "GRANT SELECT, INSERT ON torture1.* TO 'app'@'10.0.0.%'",
		"GRANT EXECUTE ON FUNCTION torture1.twice TO 'app'@'10.0.0.%'")
	wantGrants := grants(t, c, "'app'@'10.0.0.%'")
	want := digest(t, c, "torture1")
	repo := mysqlRepo(t)
	res, err := mysqlbackup.Backup(context.Background(), mysqlbackup.Config{Repo: repo, Source: src.URL(), Jobs: 3,
		Databases: []string{"torture1"}, PartRows: 1000, WithUsers: true})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if res.Meta.BinlogFile == "" || res.Meta.BinlogPos < 4 || res.Meta.GTID == "" {
		t.Fatalf("backup has no binlog coordinates: %+v", res.Meta)
	}
	bigParts, compParts := 0, 0
	for _, f := range res.Manifest.Files {
		if strings.HasPrefix(f.Path, "data/torture1/big/") {
			bigParts++
		}
		if strings.HasPrefix(f.Path, "data/torture1/comp/") {
			compParts++
		}
	}
	if bigParts < 3 || compParts < 2 {
		t.Fatalf("tables big (5000 rows) and comp (3000 rows, composite key), 1000 rows per part, stored in %d and %d parts", bigParts, compParts)
	}
	// The manifest is what a restore finds.
	m, err := repo.ReadManifest(context.Background(), res.Manifest.ID)
	if err != nil || m.Engine != "mysql" || m.Start != res.Meta.Position().String() {
		t.Fatalf("manifest: %v %+v", err, m)
	}
	var meta mysqlbackup.Meta
	if err := json.Unmarshal(m.EngineMeta, &meta); err != nil || meta.Tables != 5 || meta.Rows != 4+5000+50+3000+3 {
		t.Fatalf("engine meta %+v: %v", meta, err)
	}

	dst := testenv.NewMariaDB(t, testenv.MariaDBOptions{ServerID: 2})
	// The database exists on the target with a table the backup lacks:
	// not data in the restore's way, and left as it is.
	mustExec(t, connect(t, dst), "CREATE DATABASE torture1", "CREATE TABLE torture1.keepme (id INT PRIMARY KEY)",
		"INSERT INTO torture1.keepme VALUES (7)")
	// Every table's secondary indexes built after the load (SHOW CREATE
	// TABLE is compared: they come back exactly as they were).
	cfg := Config{Repo: repo, Target: dst.URL(), Jobs: 3, DeferIndexesAbove: 1, LoadMethod: LoadInsert}
	if r, err := LoadBase(context.Background(), cfg, planOf(t, res)); err != nil || r.LoadMethod != LoadInsert {
		t.Fatalf("restore: %v", err)
	}
	dc := connect(t, dst)
	keep := func() {
		t.Helper()
		r, err := dc.Execute("SELECT id FROM torture1.keepme")
		if err != nil || r.RowNumber() != 1 {
			t.Fatalf("the target's own table torture1.keepme: %v", err)
		}
	}
	keep()
	mustExec(t, dc, "DROP TABLE torture1.keepme")
	compareDigests(t, "restored", digest(t, dc, "torture1"), want)
	mustExec(t, dc, "CREATE TABLE torture1.keepme (id INT PRIMARY KEY)", "INSERT INTO torture1.keepme VALUES (7)")
	if got := grants(t, dc, "'app'@'10.0.0.%'"); got != wantGrants {
		t.Errorf("restored grants %q, want %q", got, wantGrants)
	}
	// Routines work, not only exist.
	r, err := dc.Execute("SELECT torture1.twice(21)")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := r.GetInt(0, 0); v != 42 {
		t.Fatalf("twice(21) = %d", v)
	}

	// A second restore into the same server is refused before writing,
	// naming what is in the way (the target's own table is not), and
	// --force replaces those objects, here loading by LOAD DATA LOCAL
	// INFILE: as exact as the inserts.
	_, err = LoadBase(context.Background(), cfg, planOf(t, res))
	if !errors.Is(err, restore.ErrTargetExists) || !strings.Contains(err.Error(), "table torture1.big") ||
		!strings.Contains(err.Error(), "function torture1.twice") || strings.Contains(err.Error(), "keepme") {
		t.Fatalf("restore over existing tables: %v", err)
	}
	mustExec(t, dc, "DELETE FROM torture1.nopk")
	cfg.Force, cfg.LoadMethod, cfg.DeferIndexesAbove = true, LoadInfile, 0
	if _, err := LoadBase(context.Background(), cfg, planOf(t, res)); err != nil {
		t.Fatalf("restore --force: %v", err)
	}
	keep()
	mustExec(t, dc, "DROP TABLE torture1.keepme")
	compareDigests(t, "restored with --force", digest(t, dc, "torture1"), want)
}

// Non-transactional tables are copied while writes to them are blocked,
// and round-trip like the rest; engines that cannot be copied
// consistently are refused by name.
func TestMySQLNonTransactionalTables(t *testing.T) {
	src := testenv.MariaDBServer(t)
	c := connect(t, src)
	mustExec(t, c, "CREATE DATABASE nontx", "USE nontx",
		"CREATE TABLE m (id INT PRIMARY KEY, v VARCHAR(20), d DATETIME(3)) ENGINE=MyISAM",
		"INSERT INTO m SELECT seq, CONCAT('m', seq), '2020-01-01 00:00:00.123' + INTERVAL seq MINUTE FROM seq_1_to_300",
		"CREATE TABLE a (id INT PRIMARY KEY, b BLOB) ENGINE=Aria",
		"INSERT INTO a VALUES (1, 0x00FF), (2, NULL), (3, '')",
		"CREATE TABLE i (id INT PRIMARY KEY, x INT) ENGINE=InnoDB", "INSERT INTO i VALUES (1, 1), (2, NULL)")
	want := digest(t, c, "nontx")
	repo := mysqlRepo(t)
	res := backupMySQL(t, repo, src, "nontx")
	if res.Meta.LockedTables != 2 || res.Meta.LockHeldMS <= 0 {
		t.Fatalf("locked tables %d, lock held %.3f ms", res.Meta.LockedTables, res.Meta.LockHeldMS)
	}
	dst := testenv.NewMariaDB(t, testenv.MariaDBOptions{ServerID: 2})
	if _, err := LoadBase(context.Background(), Config{Repo: repo, Target: dst.URL()}, planOf(t, res)); err != nil {
		t.Fatalf("restore: %v", err)
	}
	compareDigests(t, "restored", digest(t, connect(t, dst), "nontx"), want)
	// Commits run again once the backup is done.
	mustExec(t, c, "INSERT INTO nontx.m VALUES (301, 'after', NULL)", "INSERT INTO nontx.i VALUES (3, 3)")

	mustExec(t, c, "CREATE DATABASE seqdb", "CREATE SEQUENCE seqdb.s1")
	_, err := mysqlbackup.Backup(context.Background(), mysqlbackup.Config{Repo: mysqlRepo(t), Source: src.URL(), Databases: []string{"seqdb"}})
	if err == nil || !strings.Contains(err.Error(), "s1 is a SEQUENCE") {
		t.Fatalf("backup of a sequence: %v", err)
	}
}

// The default load method follows the target's local_infile: inserts
// where LOAD DATA LOCAL is refused (MySQL 8's default), LOAD DATA LOCAL
// where it is allowed (MariaDB's); both restore the same rows.
func TestMySQLLoadMethodAuto(t *testing.T) {
	src := testenv.MariaDBServer(t)
	c := connect(t, src)
	mustExec(t, c, "CREATE DATABASE automethod", "USE automethod",
		"CREATE TABLE t (id INT PRIMARY KEY, v VARBINARY(20), n INT, KEY (n))",
		"INSERT INTO t SELECT seq, IF(seq % 7 = 0, NULL, CONCAT(seq, 0x00090A5C)), seq % 11 FROM seq_1_to_2500")
	want := digest(t, c, "automethod")
	repo := mysqlRepo(t)
	res := backupMySQL(t, repo, src, "automethod")
	dst := testenv.NewMariaDB(t, testenv.MariaDBOptions{ServerID: 2, Args: []string{"--local-infile=0"}})
	cfg := Config{Repo: repo, Target: dst.URL(), Jobs: 2, DeferIndexesAbove: 1}
	r, err := LoadBase(context.Background(), cfg, planOf(t, res))
	if err != nil || r.LoadMethod != LoadInsert {
		t.Fatalf("restore into a target without local_infile: method %v, %v", r, err)
	}
	dc := connect(t, dst)
	compareDigests(t, "restored by insert", digest(t, dc, "automethod"), want)

	mustExec(t, dc, "SET GLOBAL local_infile = 1")
	cfg.Force = true
	if r, err = LoadBase(context.Background(), cfg, planOf(t, res)); err != nil || r.LoadMethod != LoadInfile {
		t.Fatalf("restore into a target with local_infile: method %v, %v", r, err)
	}
	compareDigests(t, "restored by infile", digest(t, dc, "automethod"), want)

	// An unknown method is refused before anything is dropped.
	cfg.LoadMethod = "copy"
	if _, err = LoadBase(context.Background(), cfg, planOf(t, res)); err == nil || !strings.Contains(err.Error(), `load method "copy"`) {
		t.Fatalf("unknown load method: %v", err)
	}
	compareDigests(t, "after a refused restore", digest(t, dc, "automethod"), want)
}

func TestMySQLPartialRestoreRefused(t *testing.T) {
	_, err := Restore(context.Background(), Config{Repo: mysqlRepo(t), Target: "mysql://root@127.0.0.1:1/",
		Databases: []string{"shop"}, To: binlog.Target{Latest: true}})
	if err == nil || !strings.Contains(err.Error(), "--databases") {
		t.Fatalf("partial restore: %v", err)
	}
}

func TestSplitSecondaryKeys(t *testing.T) {
	create := "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `a` int(11) DEFAULT NULL,\n  `b` text DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `a` (`a`),\n  KEY `ab` (`a`,`b`(10)),\n  FULLTEXT KEY `bt` (`b`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
	base, keys := splitSecondaryKeys(create)
	want := "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `a` int(11) DEFAULT NULL,\n  `b` text DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
	if base != want || strings.Join(keys, ", ") != "ADD UNIQUE KEY `a` (`a`), ADD KEY `ab` (`a`,`b`(10)), ADD FULLTEXT KEY `bt` (`b`)" {
		t.Fatalf("split:\n%s\n%q", base, keys)
	}
	// No primary key (the clustered index may be a unique key) or foreign
	// keys (they need their indexes): left whole.
	for _, c := range []string{strings.Replace(create, "  PRIMARY KEY (`id`),\n", "", 1),
		strings.Replace(create, "  FULLTEXT KEY `bt` (`b`)", "  CONSTRAINT `f` FOREIGN KEY (`a`) REFERENCES `p` (`id`)", 1)} {
		if b, k := splitSecondaryKeys(c); b != c || k != nil {
			t.Errorf("split %q", c)
		}
	}
}
