package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/store/pgtest"
)

// pg is the one PostgreSQL server of this test process, started in
// TestMain; pgErr says why there is none.
var (
	pg    *pgtest.Server
	pgErr error
)

func TestMain(m *testing.M) {
	if os.Getenv(kill9Env) == "" { // the kill -9 child needs no server of its own
		pg, pgErr = pgtest.Start()
	}
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

// testPassword is cheap, so the tests do not spend 64 MiB and 0.1 s on
// every hash; DefaultPassword has its own test.
var testPassword = PasswordParams{MemoryKiB: 1024, Passes: 1, Threads: 1}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// dsnFor gives a fresh, empty database of the dialect for one test.
func dsnFor(t *testing.T, dialect string) string {
	t.Helper()
	if dialect == "sqlite" {
		return filepath.Join(t.TempDir(), "relay.db")
	}
	if pg == nil {
		pgtest.Unavailable(t, pgErr)
	}
	return pg.NewDatabase(t)
}

// forEachDB runs f as a subtest on a fresh SQLite database and on a fresh
// PostgreSQL database, each opened with the clock c.
func forEachDB(t *testing.T, f func(t *testing.T, s *Store, c *clock)) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			c := newClock()
			s := openTest(t, dsnFor(t, d), c)
			f(t, s, c)
		})
	}
}

func openTest(t *testing.T, dsn string, c *clock) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, Options{Now: c.Now, Password: testPassword, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var ctx = context.Background()

func TestOpenMigratesAnEmptyDatabase(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		if v := must[int](t)(s.Version(ctx)); v != len(migrations) {
			t.Fatalf("version %d, want %d", v, len(migrations))
		}
		for _, table := range []string{"users", "hubs", "grants", "tokens", "sessions", "audit"} {
			var n int
			check(t, s.db.QueryRow(fmt.Sprintf("SELECT COUNT(*) FROM %s", table)).Scan(&n))
		}
		// Opening again changes nothing.
		s2 := openTest(t, sDSN(t, s), c)
		if v := must[int](t)(s2.Version(ctx)); v != len(migrations) {
			t.Fatalf("reopened at version %d", v)
		}
	})
}

func sDSN(t *testing.T, s *Store) string { return s.dsn }
