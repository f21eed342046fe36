// Package store is the relay's database: accounts, hubs, grants, app
// tokens, login sessions and the audit log. It runs on SQLite in one file
// (modernc.org/sqlite, pure Go: the relay stays CGO_ENABLED=0), so one relay
// needs no database server, and on PostgreSQL (pgx) when the relay's
// `store` setting is a postgres:// URL, for a fleet of relays sharing one
// database. Both run the same schema and the same queries: the SQL is
// written in the subset both understand ($1 placeholders, BIGINT times,
// INTEGER flags, TEXT for hashes, ON CONFLICT, RETURNING), and the few
// differences live in dialect.go.
//
// The schema is versioned (migrate.go, migrations/NNNN_*.sql, embedded):
// Open brings an older database up to date, one migration per transaction,
// and refuses a database newer than the binary.
//
// What the store must never do: keep a password, an app token or a session
// id in clear, or hand one to a logger. Passwords are kept as argon2id
// hashes (password.go); tokens and session ids are 32 random bytes shown
// once to their owner and kept as their SHA-256 (secret.go), so a copy of
// the database lets nobody log in or act as an app. It never deletes a hub
// on its own: the config import only adds and updates.
//
// Times are kept as Unix milliseconds (UTC); 0 means "none" (never seen,
// no expiry).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
)

// Errors a caller branches on.
var (
	ErrNotFound         = errors.New("not found")
	ErrExists           = errors.New("already exists")
	ErrBadLogin         = errors.New("wrong name or password")
	ErrDisabled         = errors.New("account disabled")
	ErrPasswordTooShort = fmt.Errorf("password too short: use at least %d characters", MinPasswordLen)
	ErrPasswordTooLong  = fmt.Errorf("password too long: at most %d bytes", maxPasswordLen)
	ErrBadName          = errors.New("bad name: use lower-case letters, digits and . _ @ - (at most 64)")
	ErrNotAllowed       = errors.New("not allowed")
)

// Options are Open's optional settings; the zero value is right for a relay.
type Options struct {
	// Logf gets one line per migration, config import and password rehash;
	// never a secret. Default: discard.
	Logf logger.Logf
	// Now is the store's clock for expiry and timestamps. Default time.Now.
	Now func() time.Time
	// Password is the argon2id cost for new hashes. Default DefaultPassword.
	// A stored hash made with other parameters is redone at its next
	// successful login.
	Password PasswordParams
}

// maxPostgresConns is how many connections one relay opens to PostgreSQL
// at most; more requests wait for one.
const maxPostgresConns = 16

// Store is an open, migrated database. Its methods are safe for
// concurrent use.
type Store struct {
	dsn  string
	db   *sql.DB
	d    dialect
	logf logger.Logf
	now  func() time.Time
	pw   PasswordParams
	// hashing bounds the password hashes computed at once: each takes
	// Password.MemoryKiB of memory, and a burst of logins must not take a
	// small relay's memory with it.
	hashing chan struct{}

	dummyOnce sync.Once
	dummy     string // see dummyHash
}

// IsPostgres reports whether dsn names a PostgreSQL database rather than a
// SQLite file.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Open opens the database dsn names — a postgres:// URL, or else the path of
// a SQLite file, created with mode 0600 when missing — and migrates it to
// the binary's schema.
func Open(ctx context.Context, dsn string, opt Options) (*Store, error) {
	s, err := open(ctx, dsn, opt)
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx, migrations); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// open opens and pings the database without migrating it.
func open(ctx context.Context, dsn string, opt Options) (*Store, error) {
	s := &Store{
		dsn:     dsn,
		logf:    logger.WithPrefix(opt.Logf, "store: "),
		now:     opt.Now,
		pw:      opt.Password,
		hashing: make(chan struct{}, max(1, runtime.NumCPU())),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.pw == (PasswordParams{}) {
		s.pw = DefaultPassword
	}
	var err error
	if IsPostgres(dsn) {
		s.d = postgres
		s.db, err = sql.Open("pgx", dsn)
		if err == nil {
			// A fleet shares the server's connections (100 by default).
			s.db.SetMaxOpenConns(maxPostgresConns)
		}
	} else {
		s.d = sqlite
		if err := createPrivate(dsn); err != nil {
			return nil, err
		}
		s.db, err = sql.Open("sqlite", sqliteDSN(dsn))
	}
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := s.db.PingContext(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("store: open %s: %w", redact(dsn), err)
	}
	return s, nil
}

// createPrivate makes the SQLite file with mode 0600 when it does not exist
// yet, so the hashes in it are the relay's alone; SQLite gives its -wal and
// -shm files the database file's mode.
func createPrivate(path string) error {
	if path == "" {
		return errors.New("store: no database path")
	}
	if strings.ContainsAny(path, "?#") {
		return fmt.Errorf("store: %q: a database path must not contain '?' or '#'", path)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	f.Close()
	return nil
}

// redact hides a postgres URL's password, for errors and logs.
func redact(dsn string) string {
	if !IsPostgres(dsn) {
		return filepath.Clean(dsn)
	}
	scheme, rest, _ := strings.Cut(dsn, "://")
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if user, _, hasPw := strings.Cut(rest[:at], ":"); hasPw {
			rest = user + ":xxxxx" + rest[at:]
		}
	}
	return scheme + "://" + rest
}

// Close closes the database. It is safe to call twice.
func (s *Store) Close() error {
	if s == nil || s.db == nil {
		return nil
	}
	return s.db.Close()
}

// Where names the database for logs: the SQLite file, or the postgres URL
// without its password.
func (s *Store) Where() string { return redact(s.dsn) }

// Dialect is "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.d.name }

// tx runs f in a transaction and commits it when f returns nil.
func (s *Store) tx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// change runs f in a transaction that also counts a change of who may
// reach what (see Revision), so a running relay re-checks at once.
func (s *Store) change(ctx context.Context, f func(*sql.Tx) error) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := f(tx); err != nil {
			return err
		}
		return bump(ctx, tx)
	})
}

// bump counts a change of who may reach what in tx (see Revision).
func bump(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `UPDATE revision SET n = n + 1 WHERE one = 1`)
	return err
}

// execChange is change for one statement; a statement that matches no row
// is ErrNotFound for what, and counts no change.
func (s *Store) execChange(ctx context.Context, what, query string, args ...any) error {
	return s.change(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		return affected(res, err, what)
	})
}

// Revision counts the changes of who may reach what: grants and revokes,
// sessions and tokens ended, accounts and hubs disabled, removed or given
// to another owner. It only grows. A relay polls it and, when it moved,
// checks again the access it let through, so a revoke made by another
// process (hubrelay grant, another relay) ends open connections at once.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT n FROM revision WHERE one = 1`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: revision: %w", err)
	}
	return n, nil
}

func (s *Store) nowMs() int64 { return s.now().UnixMilli() }

// ms is t in Unix milliseconds, 0 for the zero time.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMs is the reverse of ms.
func fromMs(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// one turns a missing row into ErrNotFound, naming what was looked for.
func one(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return err
}

// affected turns an UPDATE or DELETE that matched nothing into ErrNotFound.
func affected(res sql.Result, err error, what string) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}
