package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Token is an app token: what an XML-RPC client carries instead of a login,
// for one hub and some of its ports. Its secret is shown once, at
// creation, and never kept.
type Token struct {
	ID       int64
	HubID    int64
	Hub      string
	Label    string
	Ports    Ports
	Created  time.Time
	Expires  time.Time // zero: never
	LastUsed time.Time // zero: never; updated at most once a minute
}

// tokenTouchEvery is how stale LastUsed may get: a token used on every
// request must not cost a database write each.
const tokenTouchEvery = time.Minute

// CreateToken makes a token for hub's ports, valid until expires (zero:
// until revoked). It returns the secret, the only time it exists outside
// the app that receives it.
func (s *Store) CreateToken(ctx context.Context, hub, label string, ports Ports, expires time.Time) (secret string, t Token, err error) {
	if ports == 0 {
		return "", Token{}, errors.New("store: a token needs at least one of webui, xmlrpc, script")
	}
	secret, hash := newSecret()
	var created int64
	err = s.db.QueryRowContext(ctx, `INSERT INTO tokens (hub_id, label, hash, ports, created, expires)
		SELECT id, $2, $3, $4, $5, $6 FROM hubs WHERE name = $1 RETURNING id, hub_id, created`,
		hub, label, hash, int(ports), s.nowMs(), ms(expires)).Scan(&t.ID, &t.HubID, &created)
	if err != nil {
		return "", Token{}, one(err, fmt.Sprintf("hub %q", hub))
	}
	t.Hub, t.Label, t.Ports, t.Created, t.Expires = hub, label, ports, fromMs(created), expires
	return secret, t, nil
}

const tokenSelect = `SELECT t.id, t.hub_id, h.name, t.label, t.ports, t.created, t.expires, t.last_used
	FROM tokens t JOIN hubs h ON h.id = t.hub_id `

func scanToken(row interface{ Scan(...any) error }) (Token, error) {
	var t Token
	var ports int
	var created, expires, used int64
	if err := row.Scan(&t.ID, &t.HubID, &t.Hub, &t.Label, &ports, &created, &expires, &used); err != nil {
		return Token{}, err
	}
	t.Ports, t.Created, t.Expires, t.LastUsed = Ports(ports), fromMs(created), fromMs(expires), fromMs(used)
	return t, nil
}

// VerifyToken finds the token whose secret this is. ErrNotFound for an
// unknown, revoked or expired token, or one for a disabled hub: the caller
// refuses them all alike.
func (s *Store) VerifyToken(ctx context.Context, secret string) (Token, error) {
	now := s.nowMs()
	t, err := scanToken(s.db.QueryRowContext(ctx, tokenSelect+`WHERE t.hash = $1 AND (t.expires = 0 OR t.expires > $2) AND h.disabled = 0`,
		hashSecret(secret), now))
	if err != nil {
		return Token{}, one(err, "token")
	}
	if now-ms(t.LastUsed) >= tokenTouchEvery.Milliseconds() {
		if _, err := s.db.ExecContext(ctx, `UPDATE tokens SET last_used = $1 WHERE id = $2`, now, t.ID); err != nil {
			return Token{}, fmt.Errorf("store: token: %w", err)
		}
		t.LastUsed = fromMs(now)
	}
	return t, nil
}

// TokensOnHub lists a hub's tokens (without secrets: there are none).
func (s *Store) TokensOnHub(ctx context.Context, hub string) ([]Token, error) {
	rows, err := s.db.QueryContext(ctx, tokenSelect+`WHERE h.name = $1 ORDER BY t.id`, hub)
	if err != nil {
		return nil, fmt.Errorf("store: tokens: %w", err)
	}
	defer rows.Close()
	var ts []Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	return ts, rows.Err()
}

// RevokeToken deletes a token; it stops working at once. ErrNotFound when
// there is none.
func (s *Store) RevokeToken(ctx context.Context, id int64) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM tokens WHERE id = $1`, id)
	return affected(res, err, fmt.Sprintf("token #%d", id))
}
