package relay

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// Keys over time, inside the tunnel (hubapi.go). A request's source is a
// hub's tunnel address, which WireGuard accepts only from that hub's key,
// so the source names the hub and nothing more is needed to trust it.
//
//	GET  /hub/v1/relay-keys  {"current": K, "next": K or ""}
//	     The relay's key and the one it will have next (next_key_file):
//	     agents pin both, so a relay key change never strands a hub.
//	     An agent connecting over TCP or TLS learns the same, and its
//	     name, from the HubInfo frame that comes with the relay's first
//	     handshake response (hubInfo), and asks here only once a day over
//	     a connection that lasts, over UDP, and of relays before it. A
//	     UDP hub that pings learns from the pongs that there is a next
//	     key (nextKeyTag), and asks.
//	POST /hub/v1/key         {"public_key": NEW}
//	     The hub's next key, kept for pendingKeyTTL; nothing changes yet.
//	POST /hub/v1/key/commit  {"public_key": NEW}
//	     NEW becomes the hub's key in the store: its WireGuard peer is
//	     replaced and its agent connections closed, so the agent's next
//	     connection handshakes with NEW and the old key no longer connects.
//	     The answer may not reach the agent (its connection is closed right
//	     after); the agent knows from its next connection.
//
// Two steps, so that a hub switches to its new key only once the relay
// has it, and the relay replaces the key only once the hub has kept it.

// pendingKeyTTL is how long a hub's announced next key waits for its
// commit.
const pendingKeyTTL = 10 * time.Minute

// keyAPIMaxBody bounds a key request's body.
const keyAPIMaxBody = 1 << 10

// pendingKeys are the hubs' announced next keys, by hub name.
type pendingKeys struct {
	mu sync.Mutex
	m  map[string]pendingKey
}

type pendingKey struct {
	key   vpn.PublicKey
	until time.Time
}

// RelayKeys is the answer of GET /hub/v1/relay-keys: the relay's keys,
// and what the relay calls the asking hub now (its name may have changed
// since it enrolled: hubrelay hub rename).
type RelayKeys struct {
	Current string `json:"current"`
	Next    string `json:"next"`
	Hub     string `json:"hub"`
	URL     string `json:"url"`
}

// KeyRequest is the body of the hub's key requests.
type KeyRequest struct {
	PublicKey string `json:"public_key"`
}

// nextKey is the relay's next key, if the operator made one (hubrelay key
// rotate), read afresh at every ask so a rotate needs no restart; zero
// for none.
func (s *Server) nextKey() vpn.PublicKey {
	k, err := vpn.LoadPrivateKey(NextKeyFile(s.cfg.PrivateKeyFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return vpn.PublicKey{}
	case err != nil:
		s.storeErrLog.Warn("store: the next key is unreadable; not announcing one", logger.Err, err)
		return vpn.PublicKey{}
	}
	return k.Public()
}

// nextKeyTag is wire.NextKeyTag of the relay's next key, for the pongs to
// UDP hubs' pings (4,000 a second for 100,000 hubs): read afresh at most
// every nextKeyTagEvery.
func (s *Server) nextKeyTag() uint32 {
	now := time.Now().UnixNano()
	if at := s.nextTagAt.Load(); at != 0 && now-at < int64(nextKeyTagEvery) {
		return s.nextTag.Load()
	}
	s.nextTagAt.Store(now)
	tag := wire.NextKeyTag(s.nextKey())
	s.nextTag.Store(tag)
	return tag
}

// nextKeyTagEvery is how often nextKeyTag reads the next key's file.
const nextKeyTagEvery = 5 * time.Second

// NextKeyFile is where the relay's next key waits: beside its key.
func NextKeyFile(privateKeyFile string) string { return privateKeyFile + ".next" }

func (s *Server) keysHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := s.hubFrom(r.RemoteAddr)
		if h == nil {
			http.Error(w, "not a hub's address", http.StatusForbidden)
			return
		}
		switch {
		case r.URL.Path == "/hub/v1/relay-keys" && r.Method == http.MethodGet:
			keys := RelayKeys{Current: s.pub.String(), Hub: h.Name, URL: s.hubOrigin(h.Name, true) + "/"}
			if next := s.nextKey(); !next.IsZero() {
				keys.Next = next.String()
				s.learnedKeys(r.Context(), h)
			}
			writeJSON(w, keys)
		case r.URL.Path == "/hub/v1/key" && r.Method == http.MethodPost:
			s.announceKey(w, r, h)
		case r.URL.Path == "/hub/v1/key/commit" && r.Method == http.MethodPost:
			s.commitKey(w, r, h)
		default:
			http.NotFound(w, r)
		}
	})
}

// learnedKeys records that hub h has learned the relay's next key: hubrelay
// key promote waits for every hub to have, seen since the next key was made.
func (s *Server) learnedKeys(ctx context.Context, h *hub) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.db.HubLearnedKeys(ctx, h.Name); err != nil {
		s.storeErrLog.Warn("store: recording that a hub learned the keys failed", logger.Hub, h.Name, logger.Err, err)
	}
}

// hubInfoFrame is a sealed HubInfo waiting for the handshake response it
// goes out with (agentConn.write).
type hubInfoFrame struct {
	frame []byte
	next  bool // it announces a next key (learnedKeys once sent)
}

// hubInfo is the HubInfo for a connection of hub h whose handshake
// initiation has the ephemeral key eph: what GET /hub/v1/relay-keys
// answers, sent with the response to that initiation, so that a connecting
// agent need not ask through the tunnel (a TCP connection inside it, 2.2 KB
// on the wire at every connect). It costs one X25519 per connection, as the
// clone check's Ping does; nil for a key with no shared secret, or a
// relay playing one from before it.
func (s *Server) hubInfo(h *hub, eph [32]byte) *hubInfoFrame {
	if s.legacy {
		return nil
	}
	shared, ok := s.key.SharedSecret(h.key)
	if !ok {
		return nil
	}
	next := s.nextKey()
	info := wire.HubInfo{Next: next, Hub: h.Name, URL: s.hubOrigin(h.Name, true) + "/"}
	return &hubInfoFrame{frame: info.Seal(shared, eph), next: !next.IsZero()}
}

// hubFrom names the hub whose tunnel address remote is.
func (s *Server) hubFrom(remote string) *hub {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return nil
	}
	return s.hubs.ip(ap.Addr().Unmap())
}

// readKeyRequest reads a key request's new key; it must be a key no hub
// has, this one included.
func (s *Server) readKeyRequest(w http.ResponseWriter, r *http.Request) (vpn.PublicKey, bool) {
	var req KeyRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, keyAPIMaxBody))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		http.Error(w, "want a JSON body {\"public_key\": …}", http.StatusBadRequest)
		return vpn.PublicKey{}, false
	}
	k, err := vpn.ParsePublicKey(req.PublicKey)
	if err != nil || k.IsZero() {
		http.Error(w, "public_key: not a WireGuard public key", http.StatusBadRequest)
		return vpn.PublicKey{}, false
	}
	if s.hubs.key(k) != nil {
		http.Error(w, "public_key: that key is a hub's already", http.StatusConflict)
		return vpn.PublicKey{}, false
	}
	return k, true
}

func (s *Server) announceKey(w http.ResponseWriter, r *http.Request, h *hub) {
	k, ok := s.readKeyRequest(w, r)
	if !ok {
		return
	}
	s.pending.mu.Lock()
	if s.pending.m == nil {
		s.pending.m = map[string]pendingKey{}
	}
	now := s.now()
	for name, p := range s.pending.m {
		if now.After(p.until) {
			delete(s.pending.m, name)
		}
	}
	s.pending.m[h.Name] = pendingKey{key: k, until: now.Add(pendingKeyTTL)}
	s.pending.mu.Unlock()
	s.log.Info("hub announced its next key", logger.Hub, h.Name, "key", k.Short())
	writeJSON(w, map[string]bool{"pending": true})
}

func (s *Server) commitKey(w http.ResponseWriter, r *http.Request, h *hub) {
	k, ok := s.readKeyRequest(w, r)
	if !ok {
		return
	}
	s.pending.mu.Lock()
	p, found := s.pending.m[h.Name]
	if found && p.key == k && !s.now().After(p.until) {
		delete(s.pending.m, h.Name)
	} else {
		found = false
	}
	s.pending.mu.Unlock()
	if !found {
		http.Error(w, "no such key announced (or announced too long ago): announce it first", http.StatusConflict)
		return
	}
	if !h.due(&h.keyCommitted, s.now()) {
		http.Error(w, "this hub replaced its key less than a minute ago: try again later", http.StatusTooManyRequests)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := s.db.ReplaceHubKey(ctx, h.Name, k.String()); err != nil {
		s.log.Warn("replacing a hub's key failed", logger.Hub, h.Name, logger.Err, err)
		status := http.StatusInternalServerError
		if errors.Is(err, store.ErrExists) {
			status = http.StatusConflict
		}
		http.Error(w, "the relay could not keep the new key", status)
		return
	}
	s.log.Info("hub replaced its key", logger.Hub, h.Name, "old_key", h.key.Short(), "key", k.Short())
	s.audit.add(store.Event{Kind: store.KindHubKey, Hub: h.Name, Source: h.ip.String(), Outcome: "ok", Detail: "new key " + k.Short()})
	// The relay's next poll of the store (within watchRevision's 250 ms)
	// replaces the hub's peer and closes its agent connections; the
	// answer usually leaves before that, and the agent copes when not.
	writeJSON(w, map[string]bool{"committed": true})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}
