package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestUsers(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		for _, tc := range []struct {
			name, pw string
			want     error
		}{
			{"alice", "correct horse battery", nil},
			{"alice", "another long password", ErrExists},
			{"bob", "short", ErrPasswordTooShort},
			{"bob", "", ErrPasswordTooShort},
			{"bob", "123456789", ErrPasswordTooShort},
			{"bob", strings.Repeat("x", 2000), ErrPasswordTooLong},
			{"Bob", "long enough password", ErrBadName},
			{"", "long enough password", ErrBadName},
			{"bob smith", "long enough password", ErrBadName},
			{"bob@example.org", "1234567890", nil},
		} {
			_, err := s.AddUser(ctx, tc.name, tc.pw)
			if !errors.Is(err, tc.want) {
				t.Errorf("AddUser(%q, %d chars): %v, want %v", tc.name, len(tc.pw), err, tc.want)
			}
		}
		us := must[[]User](t)(s.Users(ctx))
		if len(us) != 2 || us[0].Name != "alice" || us[1].Name != "bob@example.org" || !us[0].Created.Equal(c.Now()) {
			t.Fatalf("users: %+v", us)
		}
		if _, err := s.UserByName(ctx, "carol"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing user: %v", err)
		}
		if err := s.RemoveUser(ctx, "carol"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("removing a missing user: %v", err)
		}
		if err := s.SetPassword(ctx, "carol", "long enough password"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("passwd of a missing user: %v", err)
		}
		if err := s.SetPassword(ctx, "alice", "short"); !errors.Is(err, ErrPasswordTooShort) {
			t.Fatalf("short passwd: %v", err)
		}
		check(t, s.RemoveUser(ctx, "bob@example.org"))
		if _, err := s.UserByName(ctx, "bob@example.org"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("removed user: %v", err)
		}
		// The name is free again.
		must[User](t)(s.AddUser(ctx, "bob@example.org", "1234567890"))
	})
}

func TestCheckPassword(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		alice := must[User](t)(s.AddUser(ctx, "alice", "correct horse battery"))
		for _, tc := range []struct {
			name, pw string
			want     error
		}{
			{"alice", "correct horse battery", nil},
			{"alice", "correct horse batterY", ErrBadLogin},
			{"alice", "", ErrBadLogin},
			{"alice", strings.Repeat("x", 5000), ErrBadLogin},
			{"nobody", "correct horse battery", ErrBadLogin},
			{"", "", ErrBadLogin},
		} {
			u, err := s.CheckPassword(ctx, tc.name, tc.pw)
			if !errors.Is(err, tc.want) || (err == nil && u.ID != alice.ID) {
				t.Errorf("CheckPassword(%q, %d chars): %v, %v; want %v", tc.name, len(tc.pw), u, err, tc.want)
			}
		}
		check(t, s.SetPassword(ctx, "alice", "a new long password"))
		if _, err := s.CheckPassword(ctx, "alice", "correct horse battery"); !errors.Is(err, ErrBadLogin) {
			t.Fatalf("old password after passwd: %v", err)
		}
		must[User](t)(s.CheckPassword(ctx, "alice", "a new long password"))

		check(t, s.SetDisabled(ctx, "alice", true))
		if _, err := s.CheckPassword(ctx, "alice", "a new long password"); !errors.Is(err, ErrDisabled) {
			t.Fatalf("disabled user: %v", err)
		}
		if _, err := s.CheckPassword(ctx, "alice", "wrong password!!"); !errors.Is(err, ErrBadLogin) {
			t.Fatalf("disabled user, wrong password: %v (must not tell the account is disabled)", err)
		}
	})
}

// A hash made with older parameters is redone at the next successful login
// (and only then), and still verifies afterwards.
func TestCheckPasswordRehashesOldParameters(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		must[User](t)(s.AddUser(ctx, "alice", "correct horse battery"))
		hash := func() string {
			var h string
			check(t, s.db.QueryRow(`SELECT password_hash FROM users WHERE name = 'alice'`).Scan(&h))
			return h
		}
		before := hash()
		if !strings.Contains(before, "m=1024,t=1,p=1") {
			t.Fatalf("hash %q", before)
		}
		s.pw = PasswordParams{MemoryKiB: 2048, Passes: 2, Threads: 1}
		s.CheckPassword(ctx, "alice", "wrong password!!")
		if hash() != before {
			t.Fatal("a failed login rehashed")
		}
		must[User](t)(s.CheckPassword(ctx, "alice", "correct horse battery"))
		after := hash()
		if after == before || !strings.Contains(after, "m=2048,t=2,p=1") {
			t.Fatalf("after login: %q", after)
		}
		must[User](t)(s.CheckPassword(ctx, "alice", "correct horse battery"))
		if hash() != after {
			t.Fatal("rehashed again with unchanged parameters")
		}
	})
}

func TestDefaultPasswordParameters(t *testing.T) {
	s := &Store{pw: DefaultPassword, hashing: make(chan struct{}, 1)}
	start := time.Now()
	phc, err := s.hashPassword("correct horse battery")
	check(t, err)
	t.Logf("one hash with the default parameters: %v", time.Since(start))
	if !strings.HasPrefix(phc, "$argon2id$v=19$m=65536,t=2,p=2$") {
		t.Fatalf("hash %q", phc)
	}
	ok, stale, err := s.verifyPassword(phc, "correct horse battery")
	if !ok || stale || err != nil {
		t.Fatalf("verify: %v %v %v", ok, stale, err)
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=65536,t=2,p=2$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=2,p=2$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "$argon2id$v=19$m=65536,t=0,p=2$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"} {
		if _, _, err := s.verifyPassword(bad, "x"); err == nil {
			t.Errorf("verified against %q", bad)
		}
	}
}

// Whatever is stored, the clear password, token or session id is not in
// it: not in any column of any table, nor in the SQLite file.
func TestSecretsAreNeverStoredInClear(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		const pw = "correct horse battery staple"
		must[User](t)(s.AddUser(ctx, "alice", pw))
		check(t, s.SetPassword(ctx, "alice", pw+" 2"))
		u := must[User](t)(s.CheckPassword(ctx, "alice", pw+" 2"))
		must[Hub](t)(s.UpsertHub(ctx, HubSpec{"home", testKey(1), "100.96.0.2"}))
		token, _, err := s.CreateToken(ctx, TokenSpec{Hub: "home", Label: "app", Ports: PortXMLRPC})
		check(t, err)
		must[Token](t)(s.VerifyToken(ctx, token))
		sid, _, err := s.CreateSession(ctx, u.ID, time.Hour, "192.0.2.1")
		check(t, err)
		must[Session](t)(s.Session(ctx, sid))
		secrets := []string{pw, pw + " 2", token, sid}
		for _, table := range []string{"users", "hubs", "grants", "tokens", "sessions", "audit", "schema_version"} {
			rows, err := s.db.Query(`SELECT * FROM ` + table)
			check(t, err)
			cols, _ := rows.Columns()
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				check(t, rows.Scan(ptrs...))
				for i, v := range vals {
					var text string
					switch v := v.(type) {
					case string:
						text = v
					case []byte:
						text = string(v)
					}
					for _, sec := range secrets {
						if text != "" && strings.Contains(text, sec) {
							t.Errorf("%s.%s holds a secret in clear", table, cols[i])
						}
					}
				}
			}
			rows.Close()
		}
		if s.d == sqlite {
			s.Close()
			for _, f := range []string{s.dsn, s.dsn + "-wal"} {
				b, _ := os.ReadFile(f)
				for _, sec := range secrets {
					if strings.Contains(string(b), sec) {
						t.Errorf("%s holds a secret in clear", filepath.Base(f))
					}
				}
			}
		}
	})
}

func TestSQLiteFileIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openTest(t, path, newClock())
	must[User](t)(s.AddUser(ctx, "alice", "correct horse battery"))
	for _, f := range []string{path, path + "-wal"} {
		fi, err := os.Stat(f)
		check(t, err)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Base(f), fi.Mode().Perm())
		}
	}
	if _, err := Open(ctx, path+"?mode=memory", Options{}); err == nil {
		t.Error("a path with '?' was taken")
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://relay:s3cret@db:5432/hub?sslmode=require": "postgres://relay:xxxxx@db:5432/hub?sslmode=require",
		"postgresql://relay@db/hub":                           "postgresql://relay@db/hub",
		"/var/lib/hubrelay/relay.db":                          "/var/lib/hubrelay/relay.db",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}
