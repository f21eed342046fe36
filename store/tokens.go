package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Token is an app token: what an XML-RPC client carries instead of a login,
// for one hub and some of its ports. Its secret is shown once, at
// creation, and never kept.
type Token struct {
	ID       int64
	HubID    int64
	Hub      string
	UserID   int64  // the user who made it; 0: the operator
	User     string // their name
	Label    string
	Ports    Ports // what it was made for
	Created  time.Time
	Expires  time.Time // zero: never
	LastUsed time.Time // zero: never; updated at most once a minute
	// Reach is what the token opens now (VerifyToken only): Ports, and
	// for a user's token no more than that user may reach on the hub
	// today, so a revoked grant takes its tokens along.
	Reach Ports
	// ReachUntil is when Reach ends by itself (VerifyToken only): the
	// token's expiry or its maker's grant's end, whichever comes first;
	// zero for neither.
	ReachUntil time.Time
}

// TokenPrefix starts every token's secret, so that the relay tells a token
// from a hub's own password in an Authorization header, and a token
// pasted somewhere it should not be is recognisable.
const TokenPrefix = "htk_"

// TokenLen is the length of a token's secret, prefix included.
const TokenLen = len(TokenPrefix) + 43

// tokenTouchEvery is how stale LastUsed may get: a token used on every
// request must not cost a database write each.
const tokenTouchEvery = time.Minute

// TokenSpec is what a new token is for.
type TokenSpec struct {
	Hub     string
	User    string // the user making it: the hub's owner or a grantee; "" for the operator
	Label   string // what it is for, e.g. "Home Assistant"
	Ports   Ports
	Expires time.Time // zero: until revoked
}

// CreateToken makes a token and returns its secret, the only time it exists
// outside the app that receives it. A user may only make tokens for a hub
// they can reach, and a user's token never opens more than the user can.
func (s *Store) CreateToken(ctx context.Context, spec TokenSpec) (secret string, t Token, err error) {
	if spec.Ports == 0 {
		return "", Token{}, errors.New("store: a token needs at least one of webui, xmlrpc, script")
	}
	var userID any // NULL: the operator's
	if spec.User != "" {
		u, err := s.UserByName(ctx, spec.User)
		if err != nil {
			return "", Token{}, err
		}
		reach, err := s.Access(ctx, u.ID, spec.Hub)
		if err != nil {
			return "", Token{}, err
		}
		if reach&spec.Ports != spec.Ports {
			return "", Token{}, fmt.Errorf("user %q may reach only %s on hub %q, not %s: %w", spec.User, reach, spec.Hub, spec.Ports, ErrNotAllowed)
		}
		userID, t.UserID, t.User = u.ID, u.ID, u.Name
	}
	raw, _ := newSecret()
	secret = TokenPrefix + raw
	var created int64
	err = s.db.QueryRowContext(ctx, `INSERT INTO tokens (hub_id, user_id, label, hash, ports, created, expires)
		SELECT id, $2, $3, $4, $5, $6, $7 FROM hubs WHERE name = $1 RETURNING id, hub_id, created`,
		spec.Hub, userID, spec.Label, hashSecret(secret), int(spec.Ports), s.nowMs(), ms(spec.Expires)).Scan(&t.ID, &t.HubID, &created)
	if err != nil {
		return "", Token{}, one(err, fmt.Sprintf("hub %q", spec.Hub))
	}
	t.Hub, t.Label, t.Ports, t.Created, t.Expires = spec.Hub, spec.Label, spec.Ports, fromMs(created), spec.Expires
	return secret, t, nil
}

const tokenSelect = `SELECT t.id, t.hub_id, h.name, COALESCE(t.user_id, 0), COALESCE(u.name, ''), t.label, t.ports, t.created, t.expires, t.last_used
	FROM tokens t JOIN hubs h ON h.id = t.hub_id LEFT JOIN users u ON u.id = t.user_id `

func scanToken(row interface{ Scan(...any) error }) (Token, error) {
	var t Token
	var ports int
	var created, expires, used int64
	if err := row.Scan(&t.ID, &t.HubID, &t.Hub, &t.UserID, &t.User, &t.Label, &ports, &created, &expires, &used); err != nil {
		return Token{}, err
	}
	t.Ports, t.Created, t.Expires, t.LastUsed = Ports(ports), fromMs(created), fromMs(expires), fromMs(used)
	return t, nil
}

// VerifyToken finds the token whose secret this is and says in Reach what
// it opens now. ErrNotFound for an unknown, revoked or expired token, or
// one for a disabled hub: the caller refuses them all alike.
func (s *Store) VerifyToken(ctx context.Context, secret string) (Token, error) {
	if len(secret) != TokenLen || !strings.HasPrefix(secret, TokenPrefix) {
		return Token{}, fmt.Errorf("token: %w", ErrNotFound)
	}
	now := s.nowMs()
	t, err := scanToken(s.db.QueryRowContext(ctx, tokenSelect+`WHERE t.hash = $1 AND (t.expires = 0 OR t.expires > $2) AND h.disabled = 0`,
		hashSecret(secret), now))
	if err != nil {
		return Token{}, one(err, "token")
	}
	t.Reach, t.ReachUntil = t.Ports, t.Expires
	if t.UserID != 0 {
		reach, until, err := s.Reach(ctx, t.UserID, t.Hub)
		if err != nil {
			return Token{}, err
		}
		t.Reach &= reach
		if !until.IsZero() && (t.ReachUntil.IsZero() || until.Before(t.ReachUntil)) {
			t.ReachUntil = until
		}
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
	return s.tokens(ctx, `WHERE h.name = $1`, hub)
}

// TokensOfUser lists the tokens a user made, on every hub.
func (s *Store) TokensOfUser(ctx context.Context, user string) ([]Token, error) {
	return s.tokens(ctx, `WHERE u.name = $1`, user)
}

// TokenByID looks a token up (without its secret); ErrNotFound when there
// is none.
func (s *Store) TokenByID(ctx context.Context, id int64) (Token, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, tokenSelect+`WHERE t.id = $1`, id))
	return t, one(err, fmt.Sprintf("token #%d", id))
}

func (s *Store) tokens(ctx context.Context, where string, args ...any) ([]Token, error) {
	rows, err := s.db.QueryContext(ctx, tokenSelect+where+` ORDER BY t.id`, args...)
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

// RevokeToken deletes a token; it stops working at once, and counts as a
// change (Revision). ErrNotFound when there is none.
func (s *Store) RevokeToken(ctx context.Context, id int64) error {
	return s.execChange(ctx, fmt.Sprintf("token #%d", id), `DELETE FROM tokens WHERE id = $1`, id)
}
