package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrPostgresBackup is Backup's answer for a PostgreSQL store: the
// database server has its own tools (pg_dump), which a fleet's operator
// runs against the one database all relays share.
var ErrPostgresBackup = errors.New("the store is a PostgreSQL database: back it up with pg_dump (the relay's key files are backed up separately)")

// Backup writes a consistent copy of the SQLite store to path, which must
// not exist, while the relay keeps running: VACUUM INTO reads the database
// in one read transaction (WAL: the relay's writes go on meanwhile and are
// either wholly in the copy or not at all) and writes a compact database
// file that needs no -wal beside it. The copy is 0600: it holds the hashes
// of passwords and tokens and the enrollment codes' seeds.
func (s *Store) Backup(ctx context.Context, path string) error {
	if s.d.name != sqlite.name {
		return ErrPostgresBackup
	}
	if strings.ContainsAny(path, "?#") {
		return fmt.Errorf("store: backup: %q: a path must not contain '?' or '#'", path)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("store: backup: %s exists", path)
	}
	// VACUUM INTO creates the file with the process's umask; make it
	// private first (SQLite writes into an empty file as into a new one).
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	f.Close()
	if _, err := s.db.ExecContext(ctx, `VACUUM INTO $1`, path); err != nil {
		os.Remove(path)
		return fmt.Errorf("store: backup: %w", err)
	}
	return nil
}

// VerifyCopy checks a SQLite database file before it replaces a store: it
// is a database SQLite finds intact, of a schema version this binary
// knows (equal or older: Open migrates an older one), with the tables of a
// store. It returns the schema version. It opens the file read-only and
// changes nothing in it.
func VerifyCopy(ctx context.Context, path string) (int, error) {
	if strings.ContainsAny(path, "?#") {
		return 0, fmt.Errorf("%q: a path must not contain '?' or '#'", path)
	}
	s := &Store{dsn: path, d: sqlite}
	db, err := openReadOnly(path)
	if err != nil {
		return 0, err
	}
	s.db = db
	defer s.Close()
	var ok string
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&ok); err != nil {
		return 0, fmt.Errorf("not an intact SQLite database: %w", err)
	}
	if ok != "ok" {
		return 0, fmt.Errorf("not an intact SQLite database: %s", ok)
	}
	v, err := s.Version(ctx)
	if err != nil {
		return 0, errors.New("not a relay's store (no schema version)")
	}
	if last := migrations[len(migrations)-1].version; v > last {
		return v, fmt.Errorf("the store is of schema version %d, newer than this hubrelay knows (%d): use the hubrelay that made it", v, last)
	}
	if v < 1 {
		return v, errors.New("not a relay's store (schema version 0)")
	}
	return v, nil
}

// Lock is an exclusive claim on a SQLite store: the running relay holds
// it, so that a second relay on the same file and a restore under a
// running relay are refused instead of losing writes. The CLI's other
// commands do not take it: they work beside a running relay.
type Lock struct{ f *os.File }

// ErrLocked is LockStore's answer while another process holds the lock.
var ErrLocked = errors.New("the store is in use by a running relay")

// LockStore takes the lock of the SQLite store at dsn (the file dsn.lock
// beside it, held with flock, which the kernel releases when the process
// ends, also by kill -9). For a PostgreSQL store it returns a Lock that
// holds nothing: relays of a fleet share that database on purpose.
func LockStore(dsn string) (*Lock, error) {
	if IsPostgres(dsn) {
		return &Lock{}, nil
	}
	f, err := os.OpenFile(filepath.Clean(dsn)+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("store %s: %w", filepath.Clean(dsn), ErrLocked)
		}
		return nil, fmt.Errorf("store: lock: %w", err)
	}
	return &Lock{f: f}, nil
}

// Release gives the lock up. It is safe on a nil Lock and twice.
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Close() // closing the last descriptor drops the flock
	l.f = nil
}

// openReadOnly opens the SQLite file at path for reading only; a missing
// file is an error, not a new database.
func openReadOnly(path string) (*sql.DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "busy_timeout(5000)")
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}).String())
	if err != nil {
		return nil, err
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("not an intact SQLite database: %w", err)
	}
	return db, nil
}
