package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Session is a browser login. Its id (the cookie's value) is shown once,
// at creation, and kept only as a hash; ID is the handle to list and revoke
// it by.
type Session struct {
	ID      int64
	UserID  int64
	User    string
	Created time.Time
	Expires time.Time
	Revoked time.Time // zero: not revoked
	Source  string    // the address the login came from
}

// Active reports whether the session is in force at now.
func (s Session) Active(now time.Time) bool { return s.Revoked.IsZero() && now.Before(s.Expires) }

// CreateSession starts a session for a user that just logged in from
// source, valid for ttl. It returns the session id for the cookie.
func (s *Store) CreateSession(ctx context.Context, userID int64, ttl time.Duration, source string) (secret string, sess Session, err error) {
	secret, hash := newSecret()
	now := s.now()
	var created, expires int64
	err = s.db.QueryRowContext(ctx, `INSERT INTO sessions (hash, user_id, created, expires, source)
		SELECT $1, id, $3, $4, $5 FROM users WHERE id = $2 RETURNING id, created, expires`,
		hash, userID, now.UnixMilli(), now.Add(ttl).UnixMilli(), source).Scan(&sess.ID, &created, &expires)
	if err != nil {
		return "", Session{}, one(err, fmt.Sprintf("user #%d", userID))
	}
	u, err := s.UserByID(ctx, userID)
	if err != nil {
		return "", Session{}, err
	}
	sess.UserID, sess.User, sess.Created, sess.Expires, sess.Source = userID, u.Name, fromMs(created), fromMs(expires), source
	return secret, sess, nil
}

const sessionSelect = `SELECT s.id, s.user_id, u.name, s.created, s.expires, s.revoked, s.source
	FROM sessions s JOIN users u ON u.id = s.user_id `

func scanSession(row interface{ Scan(...any) error }) (Session, error) {
	var ss Session
	var created, expires, revoked int64
	if err := row.Scan(&ss.ID, &ss.UserID, &ss.User, &created, &expires, &revoked, &ss.Source); err != nil {
		return Session{}, err
	}
	ss.Created, ss.Expires, ss.Revoked = fromMs(created), fromMs(expires), fromMs(revoked)
	return ss, nil
}

// Session finds the active session whose id this is. ErrNotFound for an
// unknown, expired or revoked session, or one of a disabled user.
func (s *Store) Session(ctx context.Context, secret string) (Session, error) {
	ss, err := scanSession(s.db.QueryRowContext(ctx, sessionSelect+`WHERE s.hash = $1 AND s.revoked = 0 AND s.expires > $2 AND u.disabled = 0`,
		hashSecret(secret), s.nowMs()))
	return ss, one(err, "session")
}

// Sessions lists a user's sessions that are still active, newest first.
func (s *Store) Sessions(ctx context.Context, userID int64) ([]Session, error) {
	return s.activeSessions(ctx, `s.user_id = $2 AND `, userID)
}

// activeSessions lists the active sessions that cond (ending in AND, its
// arguments from $2) selects, newest first.
func (s *Store) activeSessions(ctx context.Context, cond string, args ...any) ([]Session, error) {
	rows, err := s.db.QueryContext(ctx, sessionSelect+`WHERE `+cond+`s.revoked = 0 AND s.expires > $1 ORDER BY s.created DESC, s.id DESC`,
		append([]any{s.nowMs()}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("store: sessions: %w", err)
	}
	defer rows.Close()
	var out []Session
	for rows.Next() {
		ss, err := scanSession(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, ss)
	}
	return out, rows.Err()
}

// RevokeSession ends one session (logout, or a user ending another of
// theirs). ErrNotFound when it is not active.
func (s *Store) RevokeSession(ctx context.Context, id int64) error {
	return s.execChange(ctx, fmt.Sprintf("session #%d", id), `UPDATE sessions SET revoked = $1 WHERE id = $2 AND revoked = 0`, s.nowMs(), id)
}

// RevokeSessionBySecret ends the session whose id this is (logout with the
// cookie in hand). ErrNotFound when it is not active.
func (s *Store) RevokeSessionBySecret(ctx context.Context, secret string) error {
	return s.execChange(ctx, "session", `UPDATE sessions SET revoked = $1 WHERE hash = $2 AND revoked = 0`, s.nowMs(), hashSecret(secret))
}

// RevokeUserSessions ends every session of a user and says how many.
func (s *Store) RevokeUserSessions(ctx context.Context, userID int64) (int, error) {
	var n int64
	err := s.change(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE sessions SET revoked = $1 WHERE user_id = $2 AND revoked = 0`, s.nowMs(), userID)
		if err != nil {
			return fmt.Errorf("store: revoke sessions: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// PurgeSessions deletes sessions that ended (expired or revoked) before
// before, and says how many.
func (s *Store) PurgeSessions(ctx context.Context, before time.Time) (int, error) {
	b := ms(before)
	res, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE expires < $1 OR (revoked <> 0 AND revoked < $1)`, b)
	if err != nil {
		return 0, fmt.Errorf("store: purge sessions: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}
