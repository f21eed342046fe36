package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/atomicfile"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// Keys over time, the agent's side (the relay's is relay/keys.go).
//
// The relay's key: the agent learns the relay's keys at every new relay
// connection and once a day, and keeps the next one in relay-keys.json;
// over UDP also when the relay's pongs name a next key the agent has not
// pinned (an idle hub that pings neither connects nor handshakes).
// Over TCP and TLS the relay says them (and the hub's name) in a HubInfo
// frame with its first handshake response, MAC'd with the pinned key
// (onHubInfo); otherwise (UDP, a relay before HubInfo, the daily look on a
// connection that lasts) the agent asks inside the tunnel, an HTTP request
// of 2.2 KB on the wire. When a relay's Hello then names that next key
// (the operator promoted it), the agent pins it and connects again at
// once: a relay key change strands no hub that has connected since the
// operator made the next key. The file says which configured key it
// replaces, so a key set anew in the config or by a new enrollment wins.
//
// The hub's key: RotateKey (hubtunnel rotate-key, and once a year by
// itself) makes a new key, announces it to the relay and commits it, keeps
// it (the old one as hubtunnel.key.old), and has the transport open its
// next relay connection with it: the relay closes the old one as it
// replaces the hub's peer, so the hub is away for one reconnect.

// RelayKeysFile is the pinned relay keys' file in the agent's state folder.
const RelayKeysFile = "relay-keys.json"

// keyMaxAge is how old the hub's key may get before the agent replaces it.
const keyMaxAge = 365 * 24 * time.Hour

// relayKeys is relay-keys.json.
type relayKeys struct {
	// Configured is the relay key of the config (or enrollment) this file
	// builds on; when it is no longer that, the file is void.
	Configured string `json:"configured"`
	// Pinned is the relay key in use, when it is not Configured (the
	// relay's next key, taken when the relay switched to it).
	Pinned string `json:"pinned,omitempty"`
	// Next is the relay's next key, as it announced it.
	Next    string    `json:"next,omitempty"`
	Learned time.Time `json:"learned,omitzero"` // when the relay was last asked
}

func (c *Config) relayKeysPath() string {
	if c.dir == "" {
		return ""
	}
	return filepath.Join(c.dir, RelayKeysFile)
}

// loadOrCreateKey reads the hub's private key, or makes one on the first
// start. A damaged key file stops the agent and is never replaced: the
// relay knows this hub by that key, so a new one would lock it out.
func loadOrCreateKey(path string) (vpn.PrivateKey, bool, error) {
	k, created, err := vpn.LoadOrCreatePrivateKey(path)
	if err != nil {
		if _, serr := os.Stat(path); serr == nil {
			return k, false, fmt.Errorf("the hub's private key %s is damaged (%v); it was not replaced, since a new key would lock this hub out of its relay: restore the file from a backup, or remove it and enroll the hub again with a new code", path, errors.Unwrap(err))
		}
	}
	return k, created, err
}

// applyRelayKeys puts the pinned relay key of relay-keys.json in place of
// the configured one, when the file builds on that one. A damaged file is
// ignored with the configured key: the relay's Hello names the real one.
func (c *Config) applyRelayKeys() {
	k, err := loadRelayKeys(c.relayKeysPath())
	if err != nil {
		c.ignored = append(c.ignored, fmt.Sprintf("%v: damaged, ignored; using the relay key of the enrollment or config (the relay's Hello names a newer one)", err))
	}
	if err != nil || k == nil || k.Configured != c.relayKey.String() {
		return
	}
	if p, err := vpn.ParsePublicKey(k.Pinned); err == nil && k.Pinned != "" {
		c.relayKey = p
	}
	if n, err := vpn.ParsePublicKey(k.Next); err == nil && k.Next != "" {
		c.relayNext = n
	}
}

func loadRelayKeys(path string) (*relayKeys, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var k relayKeys
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &k, nil
}

// saveRelayKeysLocked writes relay-keys.json for the keys in use now.
func (a *Agent) saveRelayKeysLocked() error {
	path := a.cfg.relayKeysPath()
	if path == "" {
		return nil
	}
	k := relayKeys{Configured: a.cfg.RelayPublicKey, Learned: a.keysLearned}
	if a.relayKey.String() != a.cfg.RelayPublicKey {
		k.Pinned = a.relayKey.String()
	}
	if !a.relayNext.IsZero() {
		k.Next = a.relayNext.String()
	}
	b, _ := json.MarshalIndent(k, "", "  ")
	return atomicfile.WriteFile(path, append(b, '\n'), 0o600)
}

// hubAPI is an HTTP client for the relay's hub API inside the tunnel.
func (a *Agent) hubAPI() (*http.Client, string) {
	relay := netip.AddrPortFrom(a.cfg.relayTunnelIP, hubAPIPort)
	c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		Proxy:             nil, // the tunnel needs none
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return a.stack.DialTCP(ctx, relay)
		},
	}}
	return c, "http://" + relay.String() + "/hub/v1/"
}

// hubAPIPort is the relay's hub API inside the tunnel (relay/hubapi.go);
// the firewall admits its answers.
const hubAPIPort = 80

// learnRelayKeys asks the relay for its keys and keeps the next one.
func (a *Agent) learnRelayKeys(ctx context.Context) error {
	c, base := a.hubAPI()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"relay-keys", nil)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("relay keys: %s", resp.Status)
	}
	var keys struct{ Current, Next, Hub, URL string }
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&keys); err != nil {
		return fmt.Errorf("relay keys: %w", err)
	}
	var next vpn.PublicKey
	if keys.Next != "" {
		if next, err = vpn.ParsePublicKey(keys.Next); err != nil {
			return fmt.Errorf("relay keys: next: %w", err)
		}
	}
	return a.learnKeys(next, keys.Hub, keys.URL)
}

// hubInfoOn is a HubInfo and the relay connection it came on.
type hubInfoOn struct {
	info  wire.HubInfo
	conns uint64
}

// onHubInfo hears the relay's HubInfo, which came on relay connection
// conns (the transport's count) with the first handshake response, on the
// bind's reader: keysLoop, woken, takes it (it writes files).
func (a *Agent) onHubInfo(info wire.HubInfo, conns uint64) {
	a.hubInfo.Store(&hubInfoOn{info: info, conns: conns})
	select {
	case a.hubInfoWake <- struct{}{}:
	default:
	}
}

// learnKeys takes the relay's next key and what it calls this hub now,
// as the relay said them, and keeps them.
func (a *Agent) learnKeys(next vpn.PublicKey, hub, url string) error {
	a.learnName(hub, url)
	a.keyMu.Lock()
	defer a.keyMu.Unlock()
	a.keysLearned = time.Now().UTC().Truncate(time.Second)
	if next != a.relayNext {
		a.relayNext = next
		if !next.IsZero() {
			a.logf("agent: the relay announced its next key %s; pinned beside %s", next, a.relayKey.Short())
		}
	}
	return a.saveRelayKeysLocked()
}

// learnName takes the name and URL the relay has for this hub now: a hub
// renamed at the relay (hubrelay hub rename) shows its new ones, and an
// enrolled hub keeps them in enrollment.json for its next start.
func (a *Agent) learnName(name, url string) {
	if name == "" {
		return
	}
	a.keyMu.Lock()
	changed := name != a.name || url != a.url
	a.keyMu.Unlock()
	if !changed {
		return
	}
	a.logf("agent: the relay calls this hub %s now (%s)", name, url)
	// The file first: whoever sees the new name in the status finds it
	// kept. (Only keysLoop calls this, one call at a time.)
	if e := a.cfg.Enrollment(); e != nil && (e.Hub != name || e.URL != url) {
		ne := *e
		ne.Hub, ne.URL = name, url
		if err := ne.save(a.cfg.EnrollmentPath()); err != nil {
			a.logf("agent: keeping the hub's new name: %v", err)
		}
	}
	a.keyMu.Lock()
	a.name, a.url = name, url
	a.keyMu.Unlock()
}

// onRelayHello hears the key a relay's Hello names. A relay that now has
// the next key it announced is followed to it at once; any other key is
// left to WireGuard, which will not talk to it (and the relay says why).
func (a *Agent) onRelayHello(k vpn.PublicKey) {
	a.keyMu.Lock()
	defer a.keyMu.Unlock()
	if k == a.relayKey || k.IsZero() || k != a.relayNext {
		return
	}
	a.switchRelayKeyLocked(k, vpn.PublicKey{})
}

// switchRelayKeyLocked pins k as the relay's key, with next as the next
// one, and replaces the device's relay peer.
func (a *Agent) switchRelayKeyLocked(k, next vpn.PublicKey) {
	old := a.relayKey
	peer := a.relayPeer(k)
	a.dev.RemovePeer(old)
	if err := a.dev.AddPeer(peer); err != nil {
		a.logf("agent: switching to the relay's new key %s: %v", k, err)
		a.dev.AddPeer(a.relayPeer(old))
		return
	}
	a.relayKey, a.relayNext = k, next
	a.tr.useRelayKey(k)
	if err := a.saveRelayKeysLocked(); err != nil {
		a.logf("agent: keeping the relay's new key: %v (it is used until the agent restarts)", err)
	}
	a.logf("agent: the relay switched to its next key %s; following it", k)
}

// udpSilence is how long a UDP hub goes without a handshake before it
// tries the relay's other key: plain WireGuard has no Hello to say which
// key the relay has, and a relay drops handshakes for another key in
// silence. As long as the tunnel counts as connected after one: a session
// the relay started is renewed only after it expired.
const udpSilence = udpHandshakeFresh

// tryOtherRelayKey is the UDP transport's way to follow a relay's new key:
// after udpSilence without a handshake, it swaps the pinned key and the
// announced next one (and back, after as long again, if that did not help
// either: it was the network, not the key).
func (a *Agent) tryOtherRelayKey(lastHandshake, started time.Time) {
	a.keyMu.Lock()
	defer a.keyMu.Unlock()
	if a.relayNext.IsZero() || time.Since(lastHandshake) < udpSilence || time.Since(started) < udpSilence || time.Since(a.relaySwapped) < udpSilence {
		return
	}
	a.relaySwapped = time.Now()
	a.switchRelayKeyLocked(a.relayNext, a.relayKey)
}

// relayPeer is the relay as the device's one peer, with key k.
func (a *Agent) relayPeer(k vpn.PublicKey) vpn.Peer {
	return vpn.Peer{
		PublicKey:           k,
		AllowedIPs:          []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
		Endpoint:            a.tr.endpoint(),
		PersistentKeepalive: a.cfg.PersistentKeepalive,
	}
}

// RotateKey replaces the hub's key (localapi.Agent): through the tunnel,
// which must be up.
func (a *Agent) RotateKey(ctx context.Context) (localapi.RotateKeyResponse, error) {
	if !a.rotating.TryLock() {
		return localapi.RotateKeyResponse{}, localapi.ErrBusy
	}
	defer a.rotating.Unlock()
	if a.dev == nil || a.Status().State != localapi.StateConnected {
		return localapi.RotateKeyResponse{}, errors.New("the tunnel to the relay is not up: the hub's key can only be replaced through it")
	}
	a.keyMu.Lock()
	old := a.key
	a.keyMu.Unlock()
	k, err := vpn.GeneratePrivateKey()
	if err != nil {
		return localapi.RotateKeyResponse{}, err
	}
	c, base := a.hubAPI()
	// post says whether the request went out whole: a commit that did not
	// reach the relay changed nothing there.
	post := func(path string) (code int, wrote bool, _ error) {
		body, _ := json.Marshal(map[string]string{"public_key": k.Public().String()})
		trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) { wrote = i.Err == nil }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, base+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return 0, wrote, err
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, true, fmt.Errorf("the relay refused the new key: %s", bytes.TrimSpace(msg))
		}
		return resp.StatusCode, true, nil
	}
	if _, _, err := post("key"); err != nil {
		return localapi.RotateKeyResponse{}, err
	}
	// From here the relay may take the new key at any moment: keep it
	// first, the old one beside it.
	if err := vpn.SavePrivateKey(a.cfg.PrivateKeyFile+".old", old); err != nil {
		return localapi.RotateKeyResponse{}, fmt.Errorf("keeping the old key: %w", err)
	}
	if err := vpn.SavePrivateKey(a.cfg.PrivateKeyFile, k); err != nil {
		return localapi.RotateKeyResponse{}, fmt.Errorf("keeping the new key: %w", err)
	}
	// The answer to the commit may be lost with the connection the relay
	// closes as it takes the key. A refusal, or a commit that never went
	// out, leaves the relay with the old key; a lost answer is known only
	// by what the relay says to the new key (onRefused).
	code, wrote, err := post("key/commit")
	if err != nil && (code != 0 || !wrote) {
		if serr := vpn.SavePrivateKey(a.cfg.PrivateKeyFile, old); serr != nil {
			a.logf("agent: putting the old key back: %v", serr)
		}
		return localapi.RotateKeyResponse{}, fmt.Errorf("the hub keeps its key: %w", err)
	}
	switched, conns := time.Now(), a.tr.connects()
	a.keyMu.Lock()
	a.key = k
	if err != nil {
		a.rotatedFrom = &old
	}
	a.keyMu.Unlock()
	a.tr.useKey(k)
	a.logf("agent: replaced this hub's key %s with %s (the old one is kept in %s)", old.Public().Short(), k.Public(), a.cfg.PrivateKeyFile+".old")
	ok := a.awaitNewTunnel(ctx, switched, conns)
	a.keyMu.Lock()
	unsure := a.rotatedFrom != nil
	if ok {
		a.rotatedFrom = nil
	}
	a.keyMu.Unlock()
	if !ok && unsure && a.cfg.Transport == "udp" {
		// Plain WireGuard hears no refusal: no handshake with the new key
		// after a lost answer means the relay did not take it.
		a.revertKey()
	}
	return localapi.RotateKeyResponse{PublicKey: k.Public().String()}, nil
}

// onRefused hears the relay's Error frames: "not registered" for the new
// key of a rotation whose commit answer was lost means the commit did not
// reach the relay, and the hub goes back to its old key.
func (a *Agent) onRefused(code uint8) {
	if code != wire.CodeNotRegistered {
		return
	}
	a.revertKey()
}

// revertKey goes back to the key before a rotation whose commit the relay
// did not take, if there is one.
func (a *Agent) revertKey() {
	a.keyMu.Lock()
	old := a.rotatedFrom
	a.rotatedFrom = nil
	if old != nil {
		a.key = *old
	}
	a.keyMu.Unlock()
	if old == nil {
		return
	}
	if err := vpn.SavePrivateKey(a.cfg.PrivateKeyFile, *old); err != nil {
		a.logf("agent: putting the old key back: %v", err)
	}
	a.tr.useKey(*old)
	a.logf("agent: the relay did not take the new key (its commit got lost); back to the old key %s", old.Public().Short())
}

// newKeyWait bounds how long RotateKey waits for the tunnel with the new
// key: the relay closes the old connection within 250 ms of the commit,
// and a UDP hub switches when the relay no longer knows its old session,
// a second after the commit at most (udpTransport.useKey).
const newKeyWait = 15 * time.Second

// awaitNewTunnel waits until the transport has connected again (or, over
// UDP, switched keys) since conns and WireGuard has completed a handshake
// since switched: until then the status still shows the old key's tunnel,
// which the relay is about to close, as connected.
func (a *Agent) awaitNewTunnel(ctx context.Context, switched time.Time, conns uint64) bool {
	ctx, cancel := context.WithTimeout(ctx, newKeyWait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if a.tr.connects() > conns {
			if st := a.Status(); st.State == localapi.StateConnected && st.LastHandshake.After(switched) {
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false // the caller sees the status as it is
		case <-tick.C:
		}
	}
}

// nextKeyAskSpread and nextKeyAskEvery pace the asks of keysLoop for a
// next key a relay's pongs name.
const (
	nextKeyAskSpread = 2 * time.Minute
	nextKeyAskEvery  = 10 * time.Minute
)

// keysLoop learns the relay's keys at every new relay connection (from its
// HubInfo, else by asking) and once a day, and replaces the hub's key once
// it is a year old.
func (a *Agent) keysLoop() {
	defer a.wg.Done()
	// A look at the agent's own state every few seconds costs nothing
	// on the network; only a new connection or a day sends a request.
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	asked := ^uint64(0) // the connection count at the last ask or HubInfo
	started := time.Now()
	// A relay's pongs name a next key the agent has not pinned: it asks,
	// at a random time within nextKeyAskSpread (100,000 hubs learn of a
	// new key within one ping, 25 s), and again no sooner than
	// nextKeyAskEvery (the pong is not authenticated).
	var tagSeen uint32
	var tagAsk time.Time
	for {
		conns := a.tr.connects()
		st := a.Status()
		// After the status: a connection that is up had its HubInfo, if
		// any, stored before WireGuard took the handshake response. Taken
		// before the status, a HubInfo that came between the two was
		// missed, and the agent asked through the tunnel although the
		// relay had told it (the test's second connection, once in 60).
		if p := a.hubInfo.Swap(nil); p != nil {
			if err := a.learnKeys(p.info.Next, p.info.Hub, p.info.URL); err != nil {
				a.logf("agent: keeping what the relay said of its keys: %v", err)
			}
			asked = p.conns
		}
		if a.cfg.Transport == "udp" && st.State != localapi.StateConnected {
			a.tryOtherRelayKey(st.LastHandshake, started)
		}
		// A connection that came after conns was read may be the one
		// that is up: its HubInfo is for the next round.
		if st.State == localapi.StateConnected && a.tr.connects() == conns {
			a.keyMu.Lock()
			due := conns != asked || time.Since(a.keysLearned) > 24*time.Hour
			if tag := a.tr.nextKeyTag(); tag != 0 && tag != wire.NextKeyTag(a.relayNext) {
				if tag != tagSeen {
					tagSeen, tagAsk = tag, time.Now().Add(rand.N(nextKeyAskSpread))
				}
				if !time.Now().Before(tagAsk) {
					due, tagAsk = true, time.Now().Add(nextKeyAskEvery)
				}
			}
			a.keyMu.Unlock()
			if due {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				if err := a.learnRelayKeys(ctx); err != nil {
					a.logf("agent: asking the relay for its keys: %v", err)
				}
				cancel()
				asked = conns
			}
			if fi, err := os.Stat(a.cfg.PrivateKeyFile); err == nil && time.Since(fi.ModTime()) > keyMaxAge {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				if _, err := a.RotateKey(ctx); err != nil {
					a.logf("agent: replacing this hub's year-old key: %v", err)
				}
				cancel()
			}
		}
		select {
		case <-a.closing:
			return
		case <-t.C:
		case <-a.hubInfoWake:
		}
	}
}
