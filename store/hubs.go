package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Hub is a hub the relay knows.
type Hub struct {
	ID           int64
	Name         string
	OwnerID      int64 // 0: no owner yet (a hub from the config's list)
	PublicKey    string
	TunnelIP     string
	Disabled     bool
	Created      time.Time
	LastSeen     time.Time // when its agent last connected or went away
	AgentVersion string
	Model        string // e.g. "RaspberryMatic", as the agent said at its last connect
	Firmware     string
	Owner        string // the owner's name, "" for none
	// OnlineSince is when the hub's agent connected, as the relay serving
	// it recorded (HubOnline); zero while it is offline. Transport is how:
	// "tcp", "tls" or "udp"; "" while offline.
	OnlineSince time.Time
	Transport   string
	// KeysLearned is when the hub's agent last fetched the relay's keys
	// (its next key among them) through the tunnel; zero: never.
	KeysLearned time.Time
}

const hubCols = `hubs.id, hubs.name, COALESCE(hubs.owner_id, 0), hubs.public_key, hubs.tunnel_ip, hubs.disabled, hubs.created, hubs.last_seen,
	hubs.agent_version, hubs.model, hubs.firmware, COALESCE((SELECT name FROM users WHERE users.id = hubs.owner_id), ''),
	hubs.online_since, hubs.transport, hubs.keys_learned`

func scanHub(row interface{ Scan(...any) error }) (Hub, error) {
	var h Hub
	var disabled int
	var created, seen, online, learned int64
	if err := row.Scan(&h.ID, &h.Name, &h.OwnerID, &h.PublicKey, &h.TunnelIP, &disabled, &created, &seen, &h.AgentVersion, &h.Model, &h.Firmware, &h.Owner,
		&online, &h.Transport, &learned); err != nil {
		return Hub{}, err
	}
	h.Disabled, h.Created, h.LastSeen, h.OnlineSince, h.KeysLearned = disabled != 0, fromMs(created), fromMs(seen), fromMs(online), fromMs(learned)
	return h, nil
}

func (s *Store) hubs(ctx context.Context, where string, args ...any) ([]Hub, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+hubCols+` FROM hubs `+where+` ORDER BY name`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: hubs: %w", err)
	}
	defer rows.Close()
	var hs []Hub
	for rows.Next() {
		h, err := scanHub(rows)
		if err != nil {
			return nil, err
		}
		hs = append(hs, h)
	}
	return hs, rows.Err()
}

// Hubs lists every hub by name.
func (s *Store) Hubs(ctx context.Context) ([]Hub, error) { return s.hubs(ctx, "") }

// HubsOwnedBy lists the hubs a user owns.
func (s *Store) HubsOwnedBy(ctx context.Context, userID int64) ([]Hub, error) {
	return s.hubs(ctx, "WHERE owner_id = $1", userID)
}

// HubByName looks a hub up; ErrNotFound when there is none.
func (s *Store) HubByName(ctx context.Context, name string) (Hub, error) {
	h, err := scanHub(s.db.QueryRowContext(ctx, `SELECT `+hubCols+` FROM hubs WHERE name = $1`, name))
	return h, one(err, fmt.Sprintf("hub %q", name))
}

// HubByKey looks a hub up by its agent's WireGuard public key (base64);
// ErrNotFound when there is none.
func (s *Store) HubByKey(ctx context.Context, publicKey string) (Hub, error) {
	h, err := scanHub(s.db.QueryRowContext(ctx, `SELECT `+hubCols+` FROM hubs WHERE public_key = $1`, publicKey))
	return h, one(err, "hub with that key")
}

// HubSpec is what the config's [[hub]] list says of a hub.
type HubSpec struct {
	Name, PublicKey, TunnelIP string
}

// UpsertHub adds a hub or updates the key and tunnel address of the hub of
// that name, in one transaction; owner, state and history stay.
// A hub added or changed counts as a change (Revision): a running relay
// serves it at once.
func (s *Store) UpsertHub(ctx context.Context, h HubSpec) (Hub, error) {
	var out Hub
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var what string
		var err error
		if out, what, err = s.upsertHubTx(ctx, tx, h); err != nil || what == "unchanged" {
			return err
		}
		return bump(ctx, tx)
	})
	return out, err
}

// ImportResult says what ImportHubs did.
type ImportResult struct {
	Added, Updated, Unchanged []string // hub names
}

// ImportHubs makes the store agree with the config's [[hub]] list, in one
// transaction: a hub not in the store is added, a hub whose key or tunnel
// address changed is updated, and a hub that is only in the store stays.
// A hub of the list whose key or tunnel address belongs to another hub in
// the store fails the whole import, naming both: a key is a hub's identity,
// and the store never moves it silently.
func (s *Store) ImportHubs(ctx context.Context, list []HubSpec) (ImportResult, error) {
	var r ImportResult
	err := s.tx(ctx, func(tx *sql.Tx) error {
		r = ImportResult{}
		// Every hub in one query: a relay with 100,000 hubs in its list
		// took 10 s to start with three queries per hub, unchanged at
		// every start but the first.
		stored, err := storedKeys(ctx, tx)
		if err != nil {
			return err
		}
		for _, h := range list {
			// A hub that replaced the config's key through the tunnel
			// (ReplaceHubKey) keeps its own.
			was, ok := stored[h.Name]
			if ok && was.configKey != "" && was.configKey == h.PublicKey {
				h.PublicKey = was.key
			}
			if ok && was.key == h.PublicKey && was.ip == h.TunnelIP {
				// Keys and addresses are unique: no other hub has these.
				r.Unchanged = append(r.Unchanged, h.Name)
				continue
			}
			delete(stored, h.Name) // changed in this transaction from here
			_, what, err := s.upsertHubTx(ctx, tx, h)
			if err != nil {
				return err
			}
			switch what {
			case "added":
				r.Added = append(r.Added, h.Name)
			case "updated":
				r.Updated = append(r.Updated, h.Name)
			default:
				r.Unchanged = append(r.Unchanged, h.Name)
			}
		}
		if len(r.Added)+len(r.Updated) > 0 {
			return bump(ctx, tx) // a running relay serves them at once
		}
		return nil
	})
	if err != nil {
		return ImportResult{}, fmt.Errorf("store: import hubs: %w", err)
	}
	return r, nil
}

// storedHub is what ImportHubs compares of a hub in the store.
type storedHub struct{ key, ip, configKey string }

// storedKeys reads every hub's key, tunnel address and config key, by name.
func storedKeys(ctx context.Context, tx *sql.Tx) (map[string]storedHub, error) {
	rows, err := tx.QueryContext(ctx, `SELECT name, public_key, tunnel_ip, config_key FROM hubs`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m := map[string]storedHub{}
	for rows.Next() {
		var name string
		var h storedHub
		if err := rows.Scan(&name, &h.key, &h.ip, &h.configKey); err != nil {
			return nil, err
		}
		m[name] = h
	}
	return m, rows.Err()
}

func (s *Store) upsertHubTx(ctx context.Context, tx *sql.Tx, h HubSpec) (Hub, string, error) {
	// Another hub holding the key or the address?
	var other string
	err := tx.QueryRowContext(ctx, `SELECT name FROM hubs WHERE name <> $1 AND (public_key = $2 OR tunnel_ip = $3)`,
		h.Name, h.PublicKey, h.TunnelIP).Scan(&other)
	if err == nil {
		return Hub{}, "", fmt.Errorf("hub %q: its public key or tunnel_ip is hub %q's in the store: %w", h.Name, other, ErrExists)
	}
	if err != sql.ErrNoRows {
		return Hub{}, "", err
	}
	old, err := scanHub(tx.QueryRowContext(ctx, `SELECT `+hubCols+` FROM hubs WHERE name = $1`, h.Name))
	switch {
	case err == sql.ErrNoRows:
		var id int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO hubs (name, public_key, tunnel_ip, created) VALUES ($1, $2, $3, $4) RETURNING id`,
			h.Name, h.PublicKey, h.TunnelIP, s.nowMs()).Scan(&id); err != nil {
			return Hub{}, "", err
		}
		nh, err := scanHub(tx.QueryRowContext(ctx, `SELECT `+hubCols+` FROM hubs WHERE id = $1`, id))
		return nh, "added", err
	case err != nil:
		return Hub{}, "", err
	case old.PublicKey == h.PublicKey && old.TunnelIP == h.TunnelIP:
		return old, "unchanged", nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE hubs SET config_key = CASE WHEN public_key = $1 THEN config_key ELSE '' END, public_key = $1, tunnel_ip = $2 WHERE id = $3`, h.PublicKey, h.TunnelIP, old.ID); err != nil {
		return Hub{}, "", err
	}
	nh, err := scanHub(tx.QueryRowContext(ctx, `SELECT `+hubCols+` FROM hubs WHERE id = $1`, old.ID))
	return nh, "updated", err
}

// SetHubOwner makes user the hub's owner (ownerName "" leaves it without).
func (s *Store) SetHubOwner(ctx context.Context, hubName, ownerName string) error {
	var owner any // NULL
	if ownerName != "" {
		u, err := s.UserByName(ctx, ownerName)
		if err != nil {
			return err
		}
		owner = u.ID
	}
	return s.execChange(ctx, fmt.Sprintf("hub %q", hubName), `UPDATE hubs SET owner_id = $1 WHERE name = $2`, owner, hubName)
}

// NextTunnelIP is the lowest IPv4 address after after (the relay's own
// tunnel address) that no hub has, in after's /12: room for a million
// hubs. ErrExists when every one is taken.
func (s *Store) NextTunnelIP(ctx context.Context, after netip.Addr) (netip.Addr, error) {
	return nextTunnelIP(ctx, s.db, after)
}

func nextTunnelIP(ctx context.Context, q querier, after netip.Addr) (netip.Addr, error) {
	rows, err := q.QueryContext(ctx, `SELECT tunnel_ip FROM hubs`)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("store: tunnel addresses: %w", err)
	}
	defer rows.Close()
	used := map[netip.Addr]bool{}
	for rows.Next() {
		var ip string
		if err := rows.Scan(&ip); err != nil {
			return netip.Addr{}, err
		}
		if a, err := netip.ParseAddr(ip); err == nil {
			used[a] = true
		}
	}
	if err := rows.Err(); err != nil {
		return netip.Addr{}, err
	}
	net, err := after.Prefix(12)
	if err != nil || !after.Is4() {
		return netip.Addr{}, fmt.Errorf("store: tunnel addresses: %s is not an IPv4 address", after)
	}
	for a := after.Next(); net.Contains(a); a = a.Next() {
		if b := a.As4(); b[3] != 0 && b[3] != 255 && !used[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("store: no free tunnel address in %s: %w", net, ErrExists)
}

// RenameHub gives the hub old the name new, which must be free (no hub has
// it and no pending enrollment code waits for it: ErrExists). Its key,
// address, owner, grants and tokens stay; the audit log keeps the old name
// on the records made before. A running relay serves it under the new
// name at once (Revision). ErrNotFound when there is no hub old.
func (s *Store) RenameHub(ctx context.Context, old, new string) error {
	if err := CheckHubName(new); err != nil {
		return err
	}
	return s.change(ctx, func(tx *sql.Tx) error {
		if err := s.nameFreeTx(ctx, tx, new, ""); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE hubs SET name = $1 WHERE name = $2`, new, old)
		return affected(res, err, fmt.Sprintf("hub %q", old))
	})
}

// RemoveHub deletes a hub with its grants and tokens; a running relay
// stops serving it at once (Revision). The audit log keeps its name.
// ErrNotFound when there is none.
func (s *Store) RemoveHub(ctx context.Context, name string) error {
	return s.execChange(ctx, fmt.Sprintf("hub %q", name), `DELETE FROM hubs WHERE name = $1`, name)
}

// SetHubDisabled disables or enables a hub.
func (s *Store) SetHubDisabled(ctx context.Context, hubName string, disabled bool) error {
	return s.execChange(ctx, fmt.Sprintf("hub %q", hubName), `UPDATE hubs SET disabled = $1 WHERE name = $2`, b2i(disabled), hubName)
}

// AgentInfo is what a hub's agent says of itself when it connects.
type AgentInfo struct {
	Version, Model, Firmware string
}

// HubSeen records that the hub's agent is connected now, and what it said
// of itself.
func (s *Store) HubSeen(ctx context.Context, hubName string, info AgentInfo) error {
	res, err := s.db.ExecContext(ctx, `UPDATE hubs SET last_seen = $1, agent_version = $2, model = $3, firmware = $4 WHERE name = $5`,
		s.nowMs(), clipInfo(info.Version), clipInfo(info.Model), clipInfo(info.Firmware), hubName)
	return affected(res, err, fmt.Sprintf("hub %q", hubName))
}

func clipInfo(v string) string {
	v = strings.ToValidUTF8(v, "?")
	if len(v) > 64 {
		v = strings.ToValidUTF8(v[:64], "")
	}
	return v
}

// HubOnline records what HubSeen does, and that the hub's agent has been
// connected since since, over transport ("tcp", "tls", "udp"), for those
// who ask in another process (hubrelay hub list). The relay serving the hub
// calls it when the hub's first connection is proven; HubOffline when its
// last one ends.
func (s *Store) HubOnline(ctx context.Context, hubName string, info AgentInfo, since time.Time, transport string) error {
	res, err := s.db.ExecContext(ctx, hubOnlineSQL, s.hubOnlineArgs(HubState{hubName, since, transport, info})...)
	return affected(res, err, fmt.Sprintf("hub %q", hubName))
}

const (
	hubOnlineSQL  = `UPDATE hubs SET last_seen = $1, agent_version = $2, model = $3, firmware = $4, online_since = $5, transport = $6 WHERE name = $7`
	hubOfflineSQL = `UPDATE hubs SET last_seen = $1, online_since = 0, transport = '' WHERE name = $2`
)

func (s *Store) hubOnlineArgs(st HubState) []any {
	return []any{s.nowMs(), clipInfo(st.Info.Version), clipInfo(st.Info.Model), clipInfo(st.Info.Firmware), ms(st.Since), clipInfo(st.Transport), st.Name}
}

// HubState is one hub's state for RecordHubStates: online since Since
// over Transport, its agent saying Info; offline when Since is zero.
type HubState struct {
	Name      string
	Since     time.Time
	Transport string
	Info      AgentInfo
}

// RecordHubStates records what HubOnline or HubOffline would for each of
// states, in one transaction: a relay whose hubs come online together (its
// restart, thousands of UDP hubs found in one look) would otherwise make a
// commit, on SQLite an fsync, per hub, and its writers would wait on each
// other past the busy timeout. A hub no longer in the store is skipped.
func (s *Store) RecordHubStates(ctx context.Context, states []HubState) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, st := range states {
			var err error
			if st.Since.IsZero() {
				_, err = tx.ExecContext(ctx, hubOfflineSQL, s.nowMs(), st.Name)
			} else {
				_, err = tx.ExecContext(ctx, hubOnlineSQL, s.hubOnlineArgs(st)...)
			}
			if err != nil {
				return fmt.Errorf("store: recording hub %q's state: %w", st.Name, err)
			}
		}
		return nil
	})
}

// HubOffline records that the hub's agent has no connection now; it was
// last seen now.
func (s *Store) HubOffline(ctx context.Context, hubName string) error {
	res, err := s.db.ExecContext(ctx, hubOfflineSQL, s.nowMs(), hubName)
	return affected(res, err, fmt.Sprintf("hub %q", hubName))
}

// ClearOnline marks every hub offline and says how many were marked
// online. A relay calls it when it starts, with no connections yet: one
// that crashed left its hubs marked online.
func (s *Store) ClearOnline(ctx context.Context) (int64, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE hubs SET online_since = 0, transport = '' WHERE online_since <> 0 OR transport <> ''`)
	if err != nil {
		return 0, fmt.Errorf("store: clearing the hubs' online state: %w", err)
	}
	return res.RowsAffected()
}
