package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"time"
)

// Errors of UseEnrollCode, besides ErrNotFound (no such code: another
// relay's, or withdrawn).
var (
	ErrCodeUsed    = errors.New("enrollment code used already")
	ErrCodeExpired = errors.New("enrollment code expired")
	ErrKeyTaken    = errors.New("the hub's key is another hub's")
	ErrNameTaken   = errors.New("the hub's name is taken")
)

var hubNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// CheckHubName reports whether name can be a hub's name: one DNS label of
// lower-case letters, digits and '-'.
func CheckHubName(name string) error {
	if !hubNameRE.MatchString(name) {
		return fmt.Errorf("hub name %q: use lower-case letters, digits and '-' (at most 63, not starting or ending with '-')", name)
	}
	return nil
}

// EnrollCode is an enrollment code as the store keeps it: never its
// secret, which the relay derives from Seed with its key (package enroll).
type EnrollCode struct {
	ID        string // hex of the code's ID (enroll.ID), its name on the wire
	Seed      string // hex of the seed the relay derives the secret from
	RelayKey  string // the relay public key it was made under
	Hub       string // the name the hub gets
	OwnerID   int64  // 0: none
	Owner     string // the owner's name, "" for none
	CreatedBy string // "operator", or the user who made it
	Created   time.Time
	Expires   time.Time
	Used      time.Time // zero while unused
	UsedKey   string    // the hub key that used it
	UsedFrom  string    // the address it was used from
}

// Pending reports whether the code can still be used at now.
func (c EnrollCode) Pending(now time.Time) bool { return c.Used.IsZero() && now.Before(c.Expires) }

// EnrollSpec is a new code.
type EnrollSpec struct {
	ID, Seed, RelayKey string
	Hub                string
	Owner              string // a user's name, or "" for none
	CreatedBy          string
	Expires            time.Time
}

// CreateEnrollCode keeps a new code for hub spec.Hub. The name must be
// free: no hub has it and no other code waits for it (ErrExists). A code
// for a name that is already taken by the same owner's hub would replace
// that hub's key; that is not offered.
func (s *Store) CreateEnrollCode(ctx context.Context, spec EnrollSpec) (EnrollCode, error) {
	if err := CheckHubName(spec.Hub); err != nil {
		return EnrollCode{}, err
	}
	var owner any // NULL
	if spec.Owner != "" {
		u, err := s.UserByName(ctx, spec.Owner)
		if err != nil {
			return EnrollCode{}, err
		}
		owner = u.ID
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.nameFreeTx(ctx, tx, spec.Hub, ""); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO enroll_codes (id, seed, relay_key, hub, owner_id, created_by, created, expires)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			spec.ID, spec.Seed, spec.RelayKey, spec.Hub, owner, spec.CreatedBy, s.nowMs(), ms(spec.Expires))
		return err
	})
	if err != nil {
		return EnrollCode{}, fmt.Errorf("store: enrollment code for %q: %w", spec.Hub, err)
	}
	return s.EnrollCodeByID(ctx, spec.ID)
}

// nameFreeTx fails with ErrExists when a hub has name or a pending code
// other than exceptID waits for it.
func (s *Store) nameFreeTx(ctx context.Context, tx *sql.Tx, name, exceptID string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM hubs WHERE name = $1`, name).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("a hub is called %q already: %w", name, ErrExists)
	}
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM enroll_codes WHERE hub = $1 AND id <> $2 AND used = 0 AND expires > $3`,
		name, exceptID, s.nowMs()).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("a code for a hub called %q is waiting to be used: withdraw it first: %w", name, ErrExists)
	}
	return nil
}

const enrollCols = `enroll_codes.id, enroll_codes.seed, enroll_codes.relay_key, enroll_codes.hub, COALESCE(enroll_codes.owner_id, 0),
	COALESCE((SELECT name FROM users WHERE users.id = enroll_codes.owner_id), ''), enroll_codes.created_by,
	enroll_codes.created, enroll_codes.expires, enroll_codes.used, enroll_codes.used_key, enroll_codes.used_from`

func scanEnrollCode(row interface{ Scan(...any) error }) (EnrollCode, error) {
	var c EnrollCode
	var created, expires, used int64
	if err := row.Scan(&c.ID, &c.Seed, &c.RelayKey, &c.Hub, &c.OwnerID, &c.Owner, &c.CreatedBy, &created, &expires, &used, &c.UsedKey, &c.UsedFrom); err != nil {
		return EnrollCode{}, err
	}
	c.Created, c.Expires, c.Used = fromMs(created), fromMs(expires), fromMs(used)
	return c, nil
}

// EnrollCodeByID looks a code up by its ID (hex); ErrNotFound when none.
func (s *Store) EnrollCodeByID(ctx context.Context, id string) (EnrollCode, error) {
	c, err := scanEnrollCode(s.db.QueryRowContext(ctx, `SELECT `+enrollCols+` FROM enroll_codes WHERE id = $1`, id))
	return c, one(err, "enrollment code")
}

// EnrollCodes lists the codes of one owner (ownerID > 0) or all
// (ownerID 0), newest first, leaving out those used or expired more than
// a week ago.
func (s *Store) EnrollCodes(ctx context.Context, ownerID int64) ([]EnrollCode, error) {
	q := `SELECT ` + enrollCols + ` FROM enroll_codes WHERE (used = 0 AND expires > $1 OR used > $1) AND ($2 = 0 OR owner_id = $2) ORDER BY created DESC`
	rows, err := s.db.QueryContext(ctx, q, s.now().Add(-7*24*time.Hour).UnixMilli(), ownerID)
	if err != nil {
		return nil, fmt.Errorf("store: enrollment codes: %w", err)
	}
	defer rows.Close()
	var cs []EnrollCode
	for rows.Next() {
		c, err := scanEnrollCode(rows)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, rows.Err()
}

// WithdrawEnrollCode deletes an unused code (used ones stay as a record);
// ErrNotFound when there is no unused code with that ID.
func (s *Store) WithdrawEnrollCode(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM enroll_codes WHERE id = $1 AND used = 0`, id)
	return affected(res, err, "unused enrollment code")
}

// UseEnrollCode enrolls a hub with the code id, in one transaction: the
// code must be unused and unexpired, the key no hub's and the name still
// free; the hub is added with its owner and the lowest free tunnel address
// after relayTunnelIP, the code marked used, and the change counted
// (Revision), so a running relay serves the hub at once.
func (s *Store) UseEnrollCode(ctx context.Context, id, publicKey, from string, relayTunnelIP netip.Addr) (Hub, error) {
	var h Hub
	err := s.tx(ctx, func(tx *sql.Tx) error {
		c, err := scanEnrollCode(tx.QueryRowContext(ctx, `SELECT `+enrollCols+` FROM enroll_codes WHERE id = $1`, id))
		if err != nil {
			return one(err, "enrollment code")
		}
		switch {
		case !c.Used.IsZero():
			return ErrCodeUsed
		case !s.now().Before(c.Expires):
			return ErrCodeExpired
		}
		var other string
		switch err := tx.QueryRowContext(ctx, `SELECT name FROM hubs WHERE public_key = $1`, publicKey).Scan(&other); {
		case err == nil:
			return fmt.Errorf("%w: it is hub %q's", ErrKeyTaken, other)
		case err != sql.ErrNoRows:
			return err
		}
		if err := s.nameFreeTx(ctx, tx, c.Hub, c.ID); err != nil {
			return fmt.Errorf("%w: %v", ErrNameTaken, err)
		}
		ip, err := nextTunnelIP(ctx, tx, relayTunnelIP)
		if err != nil {
			return err
		}
		var owner any
		if c.OwnerID != 0 {
			owner = c.OwnerID
		}
		var hubID int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO hubs (name, public_key, tunnel_ip, owner_id, created) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
			c.Hub, publicKey, ip.String(), owner, s.nowMs()).Scan(&hubID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE enroll_codes SET used = $1, used_key = $2, used_from = $3 WHERE id = $4`,
			s.nowMs(), publicKey, from, c.ID); err != nil {
			return err
		}
		if h, err = scanHub(tx.QueryRowContext(ctx, `SELECT `+hubCols+` FROM hubs WHERE id = $1`, hubID)); err != nil {
			return err
		}
		return bump(ctx, tx)
	})
	if err != nil {
		return Hub{}, fmt.Errorf("store: enroll: %w", err)
	}
	return h, nil
}
