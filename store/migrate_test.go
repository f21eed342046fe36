package store

import (
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
)

// withSynthetic is the binary's migrations plus extra ones, as a next
// release would have them.
func withSynthetic(t *testing.T, extra ...string) []migration {
	t.Helper()
	fsys := fstest.MapFS{}
	for _, m := range migrations {
		fsys["migrations/"+m.name] = &fstest.MapFile{Data: []byte(m.sql)}
	}
	for i, sql := range extra {
		v := len(migrations) + i + 1
		fsys[fmt.Sprintf("migrations/%04d_synthetic.sql", v)] = &fstest.MapFile{Data: []byte(sql)}
	}
	ms, err := loadMigrations(fsys)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// A database at the previous version (the binary's own schema, with data)
// is brought to the next one, keeping the data.
func TestMigrateFromThePreviousVersion(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		u := must[User](t)(s.AddUser(ctx, "alice", "correct horse battery"))
		next := withSynthetic(t, `ALTER TABLE users ADD COLUMN locale TEXT NOT NULL DEFAULT 'en';
CREATE TABLE synthetic (
	id {{id}},
	note TEXT NOT NULL
);
INSERT INTO synthetic (note) VALUES ('from migration');`)
		check(t, s.migrate(ctx, next))
		if v := must[int](t)(s.Version(ctx)); v != len(next) {
			t.Fatalf("version %d, want %d", v, len(next))
		}
		var locale, note string
		check(t, s.db.QueryRow(`SELECT locale FROM users WHERE id = $1`, u.ID).Scan(&locale))
		check(t, s.db.QueryRow(`SELECT note FROM synthetic`).Scan(&note))
		if locale != "en" || note != "from migration" {
			t.Fatalf("locale %q note %q", locale, note)
		}
		if _, err := s.CheckPassword(ctx, "alice", "correct horse battery"); err != nil {
			t.Fatalf("alice after the migration: %v", err)
		}
		// The binary, which knows one version less, refuses this database.
		_, err := Open(ctx, s.dsn, Options{Password: testPassword})
		if err == nil || !strings.Contains(err.Error(), "newer hubrelay") {
			t.Fatalf("opening a newer database: %v, want a refusal", err)
		}
	})
}

// A migration that fails leaves the database at the version before it,
// with nothing of it applied.
func TestMigrationIsAllOrNothing(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		bad := withSynthetic(t, `CREATE TABLE half (x INTEGER);
INSERT INTO no_such_table VALUES (1);`)
		if err := s.migrate(ctx, bad); err == nil {
			t.Fatal("a failing migration succeeded")
		}
		if v := must[int](t)(s.Version(ctx)); v != len(migrations) {
			t.Fatalf("version %d after a failed migration, want %d", v, len(migrations))
		}
		var n int
		if err := s.db.QueryRow(`SELECT COUNT(*) FROM half`).Scan(&n); err == nil {
			t.Fatal("the failed migration's first statement stayed")
		}
		// And the next good attempt applies.
		good := withSynthetic(t, `CREATE TABLE half (x INTEGER);`)
		check(t, s.migrate(ctx, good))
		check(t, s.db.QueryRow(`SELECT COUNT(*) FROM half`).Scan(&n))
	})
}

func TestMigrationFilesAreNumberedWithoutGaps(t *testing.T) {
	_, err := loadMigrations(fstest.MapFS{
		"migrations/0001_a.sql": {Data: []byte("SELECT 1;")},
		"migrations/0003_c.sql": {Data: []byte("SELECT 1;")},
	})
	if err == nil || !strings.Contains(err.Error(), "0002") {
		t.Fatalf("a gap: %v", err)
	}
}

func TestStatementsSplitAtLineEnds(t *testing.T) {
	got := sqlite.statements("-- comment\nCREATE TABLE a (\n\tid {{id}}\n);\n\nINSERT INTO a DEFAULT VALUES;\n")
	if len(got) != 2 || !strings.Contains(got[0], "INTEGER PRIMARY KEY AUTOINCREMENT") {
		t.Fatalf("%q", got)
	}
}
