package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestBackupWhileWriting copies the store while another goroutine keeps
// adding users: the copy opens as a store, holds a consistent prefix of
// the writes (every user it has is whole, with a working password), is
// private, and the live store goes on unharmed.
func TestBackupWhileWriting(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	dir := t.TempDir()
	s := openTest(t, filepath.Join(dir, "relay.db"), c)

	const users = 60
	var wg sync.WaitGroup
	wg.Add(1)
	errc := make(chan error, 1)
	go func() {
		defer wg.Done()
		for i := range users {
			if _, err := s.AddUser(ctx, fmt.Sprintf("user%02d", i), "correct horse battery"); err != nil {
				errc <- err
				return
			}
		}
	}()
	copyPath := filepath.Join(dir, "copy.db")
	if err := s.Backup(ctx, copyPath); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}

	fi, err := os.Stat(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("the copy's mode is %v, want 0600", fi.Mode().Perm())
	}
	v, err := VerifyCopy(ctx, copyPath)
	if err != nil {
		t.Fatalf("VerifyCopy of a fresh backup: %v", err)
	}
	if want := migrations[len(migrations)-1].version; v != want {
		t.Errorf("schema version %d, want %d", v, want)
	}
	cp := openTest(t, copyPath, c)
	list, err := cp.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range list {
		if _, err := cp.CheckPassword(ctx, u.Name, "correct horse battery"); err != nil {
			t.Errorf("user %s in the copy cannot log in: %v", u.Name, err)
		}
	}
	live, _ := s.Users(ctx)
	if len(live) != users {
		t.Errorf("the live store has %d users, want %d", len(live), users)
	}
	if err := s.Backup(ctx, copyPath); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("a backup over an existing file: %v, want refused", err)
	}
}

// TestVerifyCopyRefusesWhatIsNoStore: garbage, a cut-off copy, an empty
// SQLite file and a store newer than this binary are refused with a
// reason, and the file is not changed.
func TestVerifyCopyRefusesWhatIsNoStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := newClock()
	good := filepath.Join(dir, "good.db")
	s := openTest(t, filepath.Join(dir, "relay.db"), c)
	if err := s.Backup(ctx, good); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}

	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	newer := filepath.Join(dir, "newer.db")
	if err := s.Backup(ctx, newer); err != nil {
		t.Fatal(err)
	}
	ns := openTest(t, newer, c)
	if _, err := ns.db.ExecContext(ctx, `INSERT INTO schema_version (version, name, applied) VALUES (9999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	ns.Close()

	for _, tc := range []struct {
		name, path, want string
	}{
		{"garbage", write("garbage.db", []byte(strings.Repeat("not a database ", 300))), "not an intact SQLite database"},
		{"cut off", write("cut.db", data[:len(data)/2]), "not an intact SQLite database"},
		{"no store", write("empty.db", nil), "not a relay's store"},
		{"newer", newer, "newer than this hubrelay"},
		{"missing", filepath.Join(dir, "missing.db"), "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := os.ReadFile(tc.path)
			_, err := VerifyCopy(ctx, tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("VerifyCopy = %v, want an error with %q", err, tc.want)
			}
			after, _ := os.ReadFile(tc.path)
			if string(before) != string(after) {
				t.Error("VerifyCopy changed the file")
			}
		})
	}
}

// TestLockStore: a second claim on a store is refused while the first is
// held, and granted once it is released; PostgreSQL stores are not locked.
func TestLockStore(t *testing.T) {
	dsn := filepath.Join(t.TempDir(), "relay.db")
	l, err := LockStore(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockStore(dsn); !errors.Is(err, ErrLocked) {
		t.Fatalf("second LockStore = %v, want ErrLocked", err)
	}
	l.Release()
	l.Release()
	l2, err := LockStore(dsn)
	if err != nil {
		t.Fatalf("LockStore after Release: %v", err)
	}
	l2.Release()

	p1, err := LockStore("postgres://relay@db.example/hubs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockStore("postgres://relay@db.example/hubs"); err != nil {
		t.Errorf("a PostgreSQL store was locked: %v", err)
	}
	p1.Release()
}

// TestBackupOfPostgresIsRefused: the server's tools back it up.
func TestBackupOfPostgresIsRefused(t *testing.T) {
	s := openTest(t, dsnFor(t, "postgres"), newClock())
	if err := s.Backup(context.Background(), filepath.Join(t.TempDir(), "x.db")); !errors.Is(err, ErrPostgresBackup) {
		t.Fatalf("Backup = %v, want ErrPostgresBackup", err)
	}
}
