package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Event is one audit record. It never holds a password, a token or a
// session id: Detail is for reasons ("wrong password", "grant expired").
type Event struct {
	ID        int64
	At        time.Time
	Kind      string // e.g. "login", "session", "grant", "revoke", "hub-connect"
	User      string // the user acting, if any
	TokenID   int64  // the app token acting, if any
	Hub       string
	Port      int
	Source    string // the client's address
	BytesUp   int64  // user → hub
	BytesDown int64  // hub → user
	Outcome   string // e.g. "ok", "refused", "failed"
	Detail    string
	Ended     time.Time // a session record's end (At is its start)
	Requests  int       // a session record's requests
}

// Kinds of audit records the relay writes.
const (
	KindLogin      = "login"       // a login: Outcome ok or failed, Detail why
	KindLogout     = "logout"      // a session ended by its user
	KindSession    = "session"     // a user's or token's use of a hub over one connection, start to end
	KindGrant      = "grant"       // access given: Detail the ports and until
	KindRevoke     = "revoke"      // a grant, session or token taken away
	KindToken      = "token"       // a token made
	KindHubConnect = "hub-connect" // a hub's agent came online
	KindHubGone    = "hub-gone"    // a hub's agent went offline
	KindHubKey     = "hub-key"     // a hub's agent replaced its key: Detail the new key's start
	KindEnroll     = "enroll"      // a hub enrolled with a code (Outcome ok or refused, Detail the agent's software or why), or a code made or withdrawn
	// KindClone: a connection with a hub's key was refused while the hub's
	// agent was connected and answered: a copy of the hub? Source is the
	// refused connection's address.
	KindClone = "clone"
)

// maxDetail bounds Detail, in bytes.
const maxDetail = 1024

// Append records an event; At defaults to now.
func (s *Store) Append(ctx context.Context, e Event) error {
	return s.AppendAll(ctx, []Event{e})
}

// AppendAll records events in one transaction: one disk sync for many,
// which is how the relay writes its session records.
func (s *Store) AppendAll(ctx context.Context, es []Event) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		for _, e := range es {
			if e.At.IsZero() {
				e.At = s.now()
			}
			e.Detail = strings.ToValidUTF8(e.Detail, "?")
			if len(e.Detail) > maxDetail {
				e.Detail = strings.ToValidUTF8(e.Detail[:maxDetail], "")
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO audit (at, kind, user_name, token_id, hub, port, source, bytes_up, bytes_down, outcome, detail, ended, requests)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
				e.At.UnixMilli(), e.Kind, e.User, e.TokenID, e.Hub, e.Port, e.Source, e.BytesUp, e.BytesDown, e.Outcome, e.Detail, ms(e.Ended), e.Requests)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: audit: %w", err)
	}
	return nil
}

// AuditFilter selects audit records; zero fields select everything.
type AuditFilter struct {
	Hubs  []string // any of these hubs (the portal: the hubs a user owns)
	User  string
	Kind  string
	Since time.Time // at or after
	Until time.Time // before
	// Limit is the most records returned, newest first. Default 1000.
	Limit int
}

// Audit returns the records f selects, newest first.
func (s *Store) Audit(ctx context.Context, f AuditFilter) ([]Event, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", fmt.Sprintf("$%d", len(args))))
	}
	if len(f.Hubs) > 0 {
		var ph []string
		for _, h := range f.Hubs {
			args = append(args, h)
			ph = append(ph, fmt.Sprintf("$%d", len(args)))
		}
		where = append(where, "hub IN ("+strings.Join(ph, ", ")+")")
	}
	if f.User != "" {
		add("user_name = ?", f.User)
	}
	if f.Kind != "" {
		add("kind = ?", f.Kind)
	}
	if !f.Since.IsZero() {
		add("at >= ?", f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		add("at < ?", f.Until.UnixMilli())
	}
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	q := `SELECT id, at, kind, user_name, token_id, hub, port, source, bytes_up, bytes_down, outcome, detail, ended, requests FROM audit`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, f.Limit)
	q += fmt.Sprintf(" ORDER BY at DESC, id DESC LIMIT $%d", len(args))
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: audit: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var at, ended int64
		if err := rows.Scan(&e.ID, &at, &e.Kind, &e.User, &e.TokenID, &e.Hub, &e.Port, &e.Source, &e.BytesUp, &e.BytesDown, &e.Outcome, &e.Detail, &ended, &e.Requests); err != nil {
			return nil, err
		}
		e.At, e.Ended = fromMs(at), fromMs(ended)
		out = append(out, e)
	}
	return out, rows.Err()
}
