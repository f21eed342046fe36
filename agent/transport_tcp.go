package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/hubtunnel/hubtunnel/dnsfix"
	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/uplink"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// tcpTransport is transports "tcp", "tls" and "auto": WireGuard framed over
// the agent's one outbound connection to the relay (uplink.TCPBind), TCP to
// its agent port or TLS to its TLS port, opened directly or through an HTTP
// proxy as the uplink.Dialer's routes say, with the relay's name resolved
// through dnsfix on every dial. It starts a handshake on every new relay
// connection, so that a restarted relay is usable at once rather than after
// WireGuard's 5 s retry.
type tcpTransport struct {
	b        *uplink.TCPBind
	counters wire.Counters
	hello    wire.Hello // this hub's, as each relay connection opens
	logf     logger.Logf

	dev        atomic.Pointer[vpn.Device] // set by start; read by the bind's OnConnect
	hsMu       sync.Mutex
	hsConn     uint64          // the relay connection (the bind's Connects) last handshaken on
	relayKey   vpn.PublicKey   // the relay's, as pinned now
	pendingKey *vpn.PrivateKey // the hub's new key, taken at the next connection (useKey)
	// keys are the hub's private keys by public key, the current one and
	// any new one (useKey): a connection's Pong is MAC'd with the one its
	// Hello named.
	keys map[vpn.PublicKey]vpn.PrivateKey

	dns       *dnsfix.Resolver // the relay's name; nil when the relay is an address
	relayHost string
	confirmed atomic.Uint64 // the relay connection whose address dnsfix was told of (Confirm)
}

var _ transport = (*tcpTransport)(nil)

func newTCPTransport(cfg *Config, env transportEnv) (*tcpTransport, error) {
	logf := logger.OrDiscard(env.logf)
	proxy, err := relayProxy(cfg, logf)
	if err != nil {
		return nil, err
	}
	t := &tcpTransport{relayKey: cfg.relayKey, hello: env.hello, logf: logf, dns: env.dns, relayHost: cfg.relayHost,
		keys: map[vpn.PublicKey]vpn.PrivateKey{env.key.Public(): env.key}}
	t.b = &uplink.TCPBind{
		Addr:          cfg.Relay,
		Dialer:        relayDialer(cfg, env.dns, proxy),
		Hello:         env.hello,
		Features:      &wire.Ours,
		Counters:      &t.counters,
		Sent:          env.sent,
		Logf:          logf,
		OnConnect:     t.handshake,
		PongSecret:    t.pongSecret,
		HubInfoSecret: t.hubInfoSecret,
		OnHubInfo: func(info wire.HubInfo) {
			if env.hubInfo != nil {
				env.hubInfo(info, t.b.Status().Connects)
			}
		},
		// Not on the bind's reader: following a relay's new key
		// replaces the device's peer.
		OnHello: func(h wire.Hello) {
			if env.relayHello != nil {
				go env.relayHello(vpn.PublicKey(h.Key))
			}
		},
		OnError: func(e wire.Error) {
			if env.refused != nil {
				go env.refused(e.Code)
			}
		},
	}
	return t, nil
}

func (t *tcpTransport) bind() conn.Bind { return t.b }

func (t *tcpTransport) needsChecksum(dst netip.Addr) bool { return t.b.RelayNeedsChecksum(dst) }

// wrapTUN returns dev: inbound over TCP stays unbounded (see maxInFlight).
func (t *tcpTransport) wrapTUN(dev tun.Device) tun.Device { return dev }

// endpoint is the relay's host:port; the bind has only the one.
func (t *tcpTransport) endpoint() string { return t.b.Addr }

// start handshakes now, and from here on the bind's OnConnect does at every
// new relay connection: wireguard-go may have been up before start (it
// follows the netstack's up event), and the bind connected before the peer
// existed.
func (t *tcpTransport) start(dev *vpn.Device) {
	t.dev.Store(dev)
	t.handshake()
}

// handshake starts a WireGuard handshake on the current relay connection,
// once per connection: two initiations in the same instant would make the
// relay drop the second as a replay and cost a 5 s retry.
func (t *tcpTransport) handshake() {
	d := t.dev.Load()
	st := t.b.Status()
	if d == nil || !st.Connected {
		return // the next connection's OnConnect will do it
	}
	t.hsMu.Lock()
	defer t.hsMu.Unlock()
	if t.hsConn == st.Connects {
		return
	}
	t.hsConn = st.Connects
	if t.pendingKey != nil {
		// The hub's new key: the relay took it and closed the old
		// connection; this one said its Hello.
		if err := d.SetPrivateKey(*t.pendingKey); err != nil {
			t.logf("agent: switching to the new key: %v", err)
		}
		t.pendingKey = nil
	}
	d.Handshake(t.relayKey)
}

// pongSecret is the static Diffie-Hellman secret of the hub's key that a
// connection's Hello named and the relay's key its Hello named, which keys
// the Pong (uplink.TCPBind.PongSecret): the relay computes the same from
// its private key and the hub's public one.
func (t *tcpTransport) pongSecret(hello, relay [32]byte) ([32]byte, bool) {
	t.hsMu.Lock()
	k, ok := t.keys[vpn.PublicKey(hello)]
	t.hsMu.Unlock()
	if !ok {
		return [32]byte{}, false
	}
	return k.SharedSecret(vpn.PublicKey(relay))
}

// hubInfoSecret is the static Diffie-Hellman secret of the hub's key that a
// connection's Hello named and the relay key pinned now, which keys the
// relay's HubInfo (uplink.TCPBind.HubInfoSecret): unlike the Pong's, never
// the key the relay's Hello names, which anyone can claim.
func (t *tcpTransport) hubInfoSecret(hello [32]byte) ([32]byte, bool) {
	t.hsMu.Lock()
	k, ok := t.keys[vpn.PublicKey(hello)]
	relay := t.relayKey
	t.hsMu.Unlock()
	if !ok {
		return [32]byte{}, false
	}
	return k.SharedSecret(relay)
}

func (t *tcpTransport) useRelayKey(k vpn.PublicKey) {
	t.hsMu.Lock()
	t.relayKey = k
	t.hsMu.Unlock()
	t.b.Reconnect()
}

// useKey has the next relay connection open with k's Hello and handshake.
// The relay closes the current one when it replaces the hub's peer, a
// moment after the commit; if it has not within commitWait, the
// transport connects again itself.
func (t *tcpTransport) useKey(k vpn.PrivateKey) {
	h := t.hello
	h.Key = k.Public()
	t.hsMu.Lock()
	t.pendingKey = &k
	t.keys[k.Public()] = k
	t.hsMu.Unlock()
	t.b.SetHello(h)
	time.AfterFunc(commitWait, func() {
		t.hsMu.Lock()
		waiting := t.pendingKey != nil
		t.hsMu.Unlock()
		if waiting {
			t.b.Reconnect()
		}
	})
}

// commitWait is how long useKey waits for the relay to close the old
// connection (it polls its store every 250 ms).
const commitWait = 2 * time.Second

func (t *tcpTransport) connects() uint64 { return t.b.Status().Connects }

// nextKeyTag: nothing; the relay's HubInfo names its next key at each
// connection.
func (t *tcpTransport) nextKeyTag() uint32 { return 0 }

// status counts the tunnelled bytes apart from the overhead (the bind's
// Counters). The tunnel is connected once WireGuard has completed a
// handshake on the current relay connection, not when TCP is up.
func (t *tcpTransport) status(relay vpn.PeerStats) linkStatus {
	bs := t.b.Status()
	ls := linkStatus{
		lastError:     bs.LastError,
		relaySoftware: bs.RelaySoftware,
		route:         string(bs.Route),
		rx:            t.counters.RxData.Load(),
		tx:            t.counters.TxData.Load(),
		overhead:      t.counters.RxOverhead.Load() + t.counters.TxOverhead.Load(),

		lastErrorKind:   bs.LastErrorKind,
		lastErrorDetail: bs.LastErrorDetail,
	}
	if bs.Connected && !relay.LastHandshake.Before(bs.Since) {
		ls.connected, ls.since, ls.lastError = true, bs.Since, ""
		ls.lastErrorKind, ls.lastErrorDetail = "", ""
		t.confirmDNS(bs)
	}
	return ls
}

// confirmDNS tells dnsfix, once per relay connection, that the address it
// opened to completed a handshake with the relay's pinned key: the only
// way an address reaches its cache file. Through a proxy the proxy
// resolved the name, so there is nothing to confirm.
func (t *tcpTransport) confirmDNS(bs uplink.Status) {
	if t.dns == nil || (bs.Route != uplink.RouteTCP && bs.Route != uplink.RouteTLS) || t.confirmed.Swap(bs.Connects) == bs.Connects {
		return
	}
	if ap, err := netip.ParseAddrPort(bs.RelayAddr); err == nil {
		t.dns.Confirm(t.relayHost, ap.Addr())
	}
}

// netBytes is the kernel's count of every relay connection (TCP_INFO),
// else, where there is none, the frames alone.
func (t *tcpTransport) netBytes() (rx, tx uint64) {
	if s := t.b.NetCounters(); s.OK {
		return s.Received, s.Sent
	}
	return t.counters.Rx(), t.counters.Tx()
}

func (t *tcpTransport) dropReason() string { return t.b.Status().LastError }

// close has nothing to stop: the bind's dial loop ends with the device.
func (t *tcpTransport) close() {}

// relayProxy is the HTTP proxy to reach the relay through: the config's,
// or HTTPS_PROXY's unless NO_PROXY exempts the relay; nil for none.
func relayProxy(cfg *Config, logf logger.Logf) (*url.URL, error) {
	switch cfg.Proxy {
	case "none":
		return nil, nil
	case "":
		addr := cfg.Relay
		if cfg.Transport == "tls" {
			addr = cfg.RelayTLS
		}
		u, err := uplink.ProxyFromEnvironment(addr)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		if u != nil {
			logf("agent: using proxy %s from the environment", u.Redacted())
		}
		return u, nil
	}
	return uplink.ParseProxy(cfg.Proxy) // validated already
}

// relayDialer is the relay connection's dialer, with the routes the
// transport names: the relay's name goes through r (dnsfix), which hears
// which of its addresses connect; any other name (a proxy's) keeps the
// system resolver. r is nil when the relay is an IP address.
func relayDialer(cfg *Config, r *dnsfix.Resolver, proxy *url.URL) *uplink.Dialer {
	d := &uplink.Dialer{Proxy: proxy, Transport: cfg.Transport, Relay: cfg.Relay, RelayTLS: cfg.RelayTLS}
	if r != nil {
		d.LookupHost = func(ctx context.Context, host string) ([]netip.Addr, error) {
			if host == cfg.relayHost {
				return r.LookupHost(ctx, host)
			}
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
		d.Report = r.Report
	}
	return d
}
