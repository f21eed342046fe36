package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// User is an account on the relay. It carries no password hash or TOTP
// secret: those stay inside the store.
type User struct {
	ID       int64
	Name     string
	Created  time.Time
	Disabled bool
	HasTOTP  bool
}

var userNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{0,63}$`)

// CheckUserName reports whether name can be a user's name.
func CheckUserName(name string) error {
	if !userNameRE.MatchString(name) {
		return fmt.Errorf("%q: %w", name, ErrBadName)
	}
	return nil
}

const userCols = `id, name, created, disabled, totp_secret <> ''`

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	var created int64
	var disabled int
	if err := row.Scan(&u.ID, &u.Name, &created, &disabled, &u.HasTOTP); err != nil {
		return User{}, err
	}
	u.Created, u.Disabled = fromMs(created), disabled != 0
	return u, nil
}

// AddUser creates an account. ErrExists: the name is taken;
// ErrPasswordTooShort, ErrBadName: as they say.
func (s *Store) AddUser(ctx context.Context, name, password string) (User, error) {
	if err := CheckUserName(name); err != nil {
		return User{}, err
	}
	if err := checkPassword(password); err != nil {
		return User{}, err
	}
	hash, err := s.hashPassword(password)
	if err != nil {
		return User{}, err
	}
	row := s.db.QueryRowContext(ctx, `INSERT INTO users (name, password_hash, created) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO NOTHING RETURNING `+userCols, name, hash, s.nowMs())
	u, err := scanUser(row)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %q: %w", name, ErrExists)
	}
	if err != nil {
		return User{}, fmt.Errorf("store: add user: %w", err)
	}
	return u, nil
}

// UserByName looks a user up; ErrNotFound when there is none.
func (s *Store) UserByName(ctx context.Context, name string) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE name = $1`, name))
	return u, one(err, fmt.Sprintf("user %q", name))
}

// UserByID looks a user up; ErrNotFound when there is none.
func (s *Store) UserByID(ctx context.Context, id int64) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
	return u, one(err, fmt.Sprintf("user #%d", id))
}

// Users lists every account by name.
func (s *Store) Users(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userCols+` FROM users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: users: %w", err)
	}
	defer rows.Close()
	var us []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		us = append(us, u)
	}
	return us, rows.Err()
}

// RemoveUser deletes an account with its grants and sessions; the hubs it
// owned are left without an owner. ErrNotFound when there is none.
func (s *Store) RemoveUser(ctx context.Context, name string) error {
	return s.execChange(ctx, fmt.Sprintf("user %q", name), `DELETE FROM users WHERE name = $1`, name)
}

// SetPassword replaces a user's password and revokes their sessions: a
// password changed because it leaked must end what it opened.
func (s *Store) SetPassword(ctx context.Context, name, password string) error {
	if err := checkPassword(password); err != nil {
		return err
	}
	hash, err := s.hashPassword(password)
	if err != nil {
		return err
	}
	return s.change(ctx, func(tx *sql.Tx) error {
		var id int64
		err := tx.QueryRowContext(ctx, `UPDATE users SET password_hash = $1 WHERE name = $2 RETURNING id`, hash, name).Scan(&id)
		if err != nil {
			return one(err, fmt.Sprintf("user %q", name))
		}
		_, err = tx.ExecContext(ctx, `UPDATE sessions SET revoked = $1 WHERE user_id = $2 AND revoked = 0`, s.nowMs(), id)
		return err
	})
}

// SetDisabled disables or enables an account; disabling revokes its
// sessions.
func (s *Store) SetDisabled(ctx context.Context, name string, disabled bool) error {
	return s.change(ctx, func(tx *sql.Tx) error {
		var id int64
		err := tx.QueryRowContext(ctx, `UPDATE users SET disabled = $1 WHERE name = $2 RETURNING id`, b2i(disabled), name).Scan(&id)
		if err != nil {
			return one(err, fmt.Sprintf("user %q", name))
		}
		if disabled {
			_, err = tx.ExecContext(ctx, `UPDATE sessions SET revoked = $1 WHERE user_id = $2 AND revoked = 0`, s.nowMs(), id)
		}
		return err
	})
}

// SetTOTP sets a user's TOTP secret (base32, as an authenticator app takes
// it); "" turns TOTP off.
func (s *Store) SetTOTP(ctx context.Context, name, secret string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET totp_secret = $1 WHERE name = $2`, secret, name)
	return affected(res, err, fmt.Sprintf("user %q", name))
}

// TOTPSecret is a user's TOTP secret, "" when TOTP is off. For the login
// check only: never log or show it after enrolment.
func (s *Store) TOTPSecret(ctx context.Context, userID int64) (string, error) {
	var secret string
	err := s.db.QueryRowContext(ctx, `SELECT totp_secret FROM users WHERE id = $1`, userID).Scan(&secret)
	return secret, one(err, fmt.Sprintf("user #%d", userID))
}

// dummyHash is verified against when a login names no user, so that an
// unknown name costs what a wrong password costs and timing does not tell
// which names exist. Made once, with the store's parameters.
func (s *Store) dummyHash() string {
	s.dummyOnce.Do(func() { s.dummy, _ = s.hashPassword("not a password of anyone") })
	return s.dummy
}

// CheckPassword is the password step of a login. It returns the user when
// name and password match; ErrBadLogin for an unknown name or a wrong
// password alike (taking the same time); ErrDisabled, with the user, for a
// disabled account with the right password. A hash made with other
// parameters than the store's is redone on the way (the rehash-on-login
// hook), so raising the cost reaches every account that logs in.
func (s *Store) CheckPassword(ctx context.Context, name, password string) (User, error) {
	var phc string
	row := s.db.QueryRowContext(ctx, `SELECT `+userCols+`, password_hash FROM users WHERE name = $1`, name)
	var u User
	var created int64
	var disabled int
	err := row.Scan(&u.ID, &u.Name, &created, &disabled, &u.HasTOTP, &phc)
	if errors.Is(err, sql.ErrNoRows) || len(password) > maxPasswordLen {
		s.verifyPassword(s.dummyHash(), password)
		return User{}, ErrBadLogin
	}
	if err != nil {
		return User{}, fmt.Errorf("store: check password: %w", err)
	}
	u.Created, u.Disabled = fromMs(created), disabled != 0
	ok, stale, err := s.verifyPassword(phc, password)
	if err != nil {
		return User{}, fmt.Errorf("store: user %q: %w", name, err)
	}
	if !ok {
		return User{}, ErrBadLogin
	}
	if stale {
		if hash, err := s.hashPassword(password); err == nil {
			// Only if nobody changed the password meanwhile.
			res, err := s.db.ExecContext(ctx, `UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3`, hash, u.ID, phc)
			if err == nil {
				if n, _ := res.RowsAffected(); n == 1 {
					s.logf("rehashed the password of user %q with the current parameters", name)
				}
			}
		}
	}
	if u.Disabled {
		return u, ErrDisabled
	}
	return u, nil
}
