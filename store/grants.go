package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Grant lets a user reach a hub's ports, until a time or for good.
type Grant struct {
	UserID  int64
	User    string
	HubID   int64
	Hub     string
	Ports   Ports
	Until   time.Time // zero: no end
	Created time.Time
}

// Active reports whether the grant is in force at now.
func (g Grant) Active(now time.Time) bool { return g.Until.IsZero() || now.Before(g.Until) }

// Grant lets user reach hub's ports until until (zero: no end), replacing
// what the user had on that hub.
func (s *Store) Grant(ctx context.Context, user, hub string, ports Ports, until time.Time) error {
	if ports == 0 {
		return errors.New("store: a grant needs at least one of webui, xmlrpc, script")
	}
	return s.execChange(ctx, fmt.Sprintf("user %q or hub %q", user, hub), `INSERT INTO grants (user_id, hub_id, ports, until_at, created)
		SELECT u.id, h.id, $3, $4, $5 FROM users u, hubs h WHERE u.name = $1 AND h.name = $2
		ON CONFLICT (user_id, hub_id) DO UPDATE SET ports = excluded.ports, until_at = excluded.until_at`,
		user, hub, int(ports), ms(until), s.nowMs())
}

// Revoke takes user's grant on hub away; ErrNotFound when there was none.
// It counts as a change (Revision): a running relay ends the connections
// the grant let the user open.
func (s *Store) Revoke(ctx context.Context, user, hub string) error {
	return s.execChange(ctx, fmt.Sprintf("grant of hub %q to user %q", hub, user), `DELETE FROM grants WHERE user_id = (SELECT id FROM users WHERE name = $1)
		AND hub_id = (SELECT id FROM hubs WHERE name = $2)`, user, hub)
}

const grantSelect = `SELECT g.user_id, u.name, g.hub_id, h.name, g.ports, g.until_at, g.created
	FROM grants g JOIN users u ON u.id = g.user_id JOIN hubs h ON h.id = g.hub_id `

func (s *Store) grants(ctx context.Context, where string, args ...any) ([]Grant, error) {
	rows, err := s.db.QueryContext(ctx, grantSelect+where+` ORDER BY h.name, u.name`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: grants: %w", err)
	}
	defer rows.Close()
	var gs []Grant
	for rows.Next() {
		var g Grant
		var ports int
		var until, created int64
		if err := rows.Scan(&g.UserID, &g.User, &g.HubID, &g.Hub, &ports, &until, &created); err != nil {
			return nil, err
		}
		g.Ports, g.Until, g.Created = Ports(ports), fromMs(until), fromMs(created)
		gs = append(gs, g)
	}
	return gs, rows.Err()
}

// GrantsOnHub lists the grants on a hub, expired ones too.
func (s *Store) GrantsOnHub(ctx context.Context, hub string) ([]Grant, error) {
	return s.grants(ctx, `WHERE h.name = $1`, hub)
}

// GrantsOfUser lists a user's grants, expired ones too.
func (s *Store) GrantsOfUser(ctx context.Context, user string) ([]Grant, error) {
	return s.grants(ctx, `WHERE u.name = $1`, user)
}

// Access is what a user may reach on a hub now: every port for its owner,
// the grant's ports while it is in force, nothing otherwise — nor for a
// disabled user or hub.
func (s *Store) Access(ctx context.Context, userID int64, hub string) (Ports, error) {
	p, _, err := s.Reach(ctx, userID, hub)
	return p, err
}

// Reach is Access with the time it ends: the grant's until, zero for an
// owner or a grant without end (and for no access).
func (s *Store) Reach(ctx context.Context, userID int64, hub string) (Ports, time.Time, error) {
	var owner, disabled, udisabled int
	var ports sql.NullInt64
	var until sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT CASE WHEN h.owner_id = u.id THEN 1 ELSE 0 END, h.disabled, u.disabled, g.ports, g.until_at
		FROM hubs h JOIN users u ON u.id = $1
		LEFT JOIN grants g ON g.hub_id = h.id AND g.user_id = u.id
		WHERE h.name = $2`, userID, hub).Scan(&owner, &disabled, &udisabled, &ports, &until)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("store: access: %w", err)
	}
	switch {
	case disabled != 0 || udisabled != 0:
		return 0, time.Time{}, nil
	case owner == 1:
		return PortsAll, time.Time{}, nil
	case !ports.Valid:
		return 0, time.Time{}, nil
	case until.Int64 != 0 && s.nowMs() >= until.Int64:
		return 0, time.Time{}, nil
	}
	return Ports(ports.Int64), fromMs(until.Int64), nil
}
