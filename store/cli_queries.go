package store

import (
	"context"
	"fmt"
)

// The queries here serve the operator's command line (hubrelay grants,
// token list, session list and revoke), which looks across every user and
// hub where the portal only ever looks at one user's.

// AllGrants lists every grant on every hub, expired ones too, by hub and
// user.
func (s *Store) AllGrants(ctx context.Context) ([]Grant, error) {
	return s.grants(ctx, "")
}

// AllTokens lists every app token (without secrets: there are none), by id.
func (s *Store) AllTokens(ctx context.Context) ([]Token, error) {
	return s.tokens(ctx, "")
}

// ActiveSessions lists the sessions of every user that are still active,
// newest first.
func (s *Store) ActiveSessions(ctx context.Context) ([]Session, error) {
	return s.activeSessions(ctx, "")
}

// SessionByID looks a session up by its handle, whatever its state (the
// caller asks Active); ErrNotFound when there is none.
func (s *Store) SessionByID(ctx context.Context, id int64) (Session, error) {
	ss, err := scanSession(s.db.QueryRowContext(ctx, sessionSelect+`WHERE s.id = $1`, id))
	return ss, one(err, fmt.Sprintf("session #%d", id))
}
