package agent

import (
	"fmt"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/hubtunnel/hubtunnel/dnsfix"
	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// A transport is how the agent reaches the relay: the conn.Bind WireGuard
// sends and receives through, and what goes with it. The config's
// transport setting picks one, in newTransport; nothing else in the agent
// asks which it has.
//
// The agent calls each method once, in this order:
//
//  1. bind and wrapTUN, to make the WireGuard device;
//  2. endpoint, for the relay peer it adds to that device;
//  3. start, once the device is up with that peer and the listeners;
//  4. close, when the agent stops, before it closes the device.
//
// A start that fails part way skips to close, which must then cope with
// start never having run. status may be called at any time between 1 and 4,
// concurrently with everything else.
type transport interface {
	// bind is the conn.Bind for the WireGuard device. The device owns it
	// from then on: closing the device closes the bind.
	bind() conn.Bind

	// wrapTUN returns the tun.Device that WireGuard writes received
	// packets to: dev itself, or a wrapper around it that accounts for
	// them.
	wrapTUN(dev tun.Device) tun.Device

	// endpoint is the relay peer's WireGuard endpoint; "" when it is not
	// known yet (the transport sets it on the device later).
	endpoint() string

	// start does what the transport does with the running device, such as
	// a handshake or re-resolving the relay's name. It returns at once;
	// anything it leaves running ends in close.
	start(dev *vpn.Device)

	// status is the transport's part of the agent's status, given what
	// WireGuard knows of the relay peer.
	status(relay vpn.PeerStats) linkStatus

	// close stops what start left running and waits for it to end. It
	// does not close the bind: the device does.
	close()

	// useRelayKey makes k the relay's key for the transport's own
	// handshakes, after the agent replaced the device's relay peer with
	// k's, and connects again at once.
	useRelayKey(k vpn.PublicKey)

	// useKey switches the hub to its new key k, which the relay has just
	// taken: the transport's next relay connection says k's Hello and
	// handshakes with k. It returns at once.
	useKey(k vpn.PrivateKey)

	// connects counts the relay connections made so far; a transport
	// without connections counts the handshakes it started.
	connects() uint64
	// nextKeyTag is what the relay last said in passing of its next key
	// (wire.NextKeyTag; UDP pongs), 0 if nothing: a transport that
	// connects learns the keys at each connection instead.
	nextKeyTag() uint32
	// needsChecksum reports whether the packets to the relay need TCP
	// checksums (netstack.Config.NeedsChecksum): over TCP not once the
	// relay's Features said it verifies none; over UDP always.
	needsChecksum(dst netip.Addr) bool
}

// linkStatus is a transport's part of the agent's Status.
type linkStatus struct {
	connected     bool      // the tunnel to the relay works now
	since         time.Time // connected since; zero if the transport cannot tell
	lastError     string    // why the last attempt failed, while not connected
	relaySoftware string    // what the relay said it runs
	route         string    // how the relay connection was opened ("tcp", "tls via proxy", ...); "" if not connected or UDP
	rx, tx        uint64    // bytes received and sent (what they count is the transport's)
	overhead      uint64    // bytes beyond rx and tx; 0 if they include everything

	lastErrorKind, lastErrorDetail string // lastError's kind and detail (uplink.Explain)
}

// transportEnv is what a transport is made from besides the config.
type transportEnv struct {
	dns   *dnsfix.Resolver // resolves the relay's name; nil when the relay is an IP address
	hello wire.Hello       // what each relay connection opens with (TCP)
	key   vpn.PrivateKey   // the hub's, whose public key hello names (TCP: the Pong's MAC)
	sent  func(n int)      // told the data packets handed to the network (netstack.Stack.Sent)
	// relayHello hears the key each relay Hello names (TCP), for a relay
	// that switched to its announced next key (keys.go).
	relayHello func(vpn.PublicKey)
	// hubInfo hears the relay's HubInfo (TCP: MAC'd with the pinned relay
	// key, before the handshake response of relay connection conns), on
	// the bind's reader: it must not block.
	hubInfo func(info wire.HubInfo, conns uint64)
	// refused hears the code of each Error frame the relay sends (TCP).
	refused func(code uint8)
	logf    logger.Logf
}

// newTransport makes the transport that cfg.Transport names. It is the one
// place that asks.
func newTransport(cfg *Config, env transportEnv) (transport, error) {
	switch cfg.Transport {
	case "tcp", "tls", "auto": // the same frames; the dialer picks the route
		t, err := newTCPTransport(cfg, env)
		if err != nil {
			return nil, err
		}
		return t, nil
	case "udp":
		return newUDPTransport(cfg, env), nil
	}
	return nil, fmt.Errorf("agent: transport %q: want \"tcp\", \"udp\", \"tls\" or \"auto\"", cfg.Transport) // Validate says so first
}
