package vpn

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/hubtunnel/hubtunnel/internal/logger"
)

// Device is a wireguard-go device with its peers, configured through the
// UAPI text protocol so it behaves exactly like `wg set`.
type Device struct {
	dev  *device.Device
	logf logger.Logf
}

// Peer is one WireGuard peer.
type Peer struct {
	PublicKey  PublicKey
	AllowedIPs []netip.Prefix
	// Endpoint is where to send to before the peer has spoken (the agent
	// sets the relay; the relay leaves it empty and learns it).
	Endpoint string
	// PersistentKeepalive in seconds; 0 = off. Only for UDP through NAT.
	PersistentKeepalive int
}

// NewDevice makes a WireGuard device on t (the netstack, perhaps behind
// the firewall) and b, with private key k. Note that wireguard-go brings the
// device up by itself as soon as t reports tun.EventUp, so the bind may be
// open before any peer is added.
func NewDevice(t tun.Device, b conn.Bind, k PrivateKey, logf logger.Logf) (*Device, error) {
	logf = logger.OrDiscard(logf)
	d := &Device{logf: logf}
	d.dev = device.NewDevice(t, b, &device.Logger{
		Verbosef: device.DiscardLogf,
		Errorf:   wireguardErrorf(logf, 10*time.Second),
	})
	if err := d.dev.IpcSet("private_key=" + k.hex() + "\n"); err != nil {
		d.dev.Close()
		return nil, fmt.Errorf("vpn.NewDevice: %w", err)
	}
	return d, nil
}

// Up opens the bind and starts moving packets; a no-op if already up.
func (d *Device) Up() error {
	if err := d.dev.Up(); err != nil {
		return fmt.Errorf("vpn: device up: %w", err)
	}
	return nil
}

// SetListenPort sets the UDP port (for the standard UDP bind).
func (d *Device) SetListenPort(port uint16) error {
	return d.dev.IpcSet(fmt.Sprintf("listen_port=%d\n", port))
}

// AddPeer adds or updates a peer; its allowed IPs are replaced.
func (d *Device) AddPeer(p Peer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "public_key=%s\nreplace_allowed_ips=true\n", p.PublicKey.hex())
	for _, a := range p.AllowedIPs {
		fmt.Fprintf(&b, "allowed_ip=%s\n", a)
	}
	if p.Endpoint != "" {
		fmt.Fprintf(&b, "endpoint=%s\n", p.Endpoint)
	}
	fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", p.PersistentKeepalive)
	if err := d.dev.IpcSet(b.String()); err != nil {
		return fmt.Errorf("vpn: peer %s: %w", p.PublicKey.Short(), err)
	}
	return nil
}

// SetPrivateKey replaces the device's key, as `wg set private-key` does:
// the current sessions end, and the next handshake is made with k.
func (d *Device) SetPrivateKey(k PrivateKey) error {
	return d.dev.IpcSet("private_key=" + k.hex() + "\n")
}

// SetEndpoint points a peer at a new endpoint (UDP mode re-resolves).
func (d *Device) SetEndpoint(pk PublicKey, endpoint string) error {
	return d.dev.IpcSet(fmt.Sprintf("public_key=%s\nupdate_only=true\nendpoint=%s\n", pk.hex(), endpoint))
}

// SetPersistentKeepalive sets a peer's persistent keepalive, in seconds
// (0: off), as `wg set … persistent-keepalive` does: turned on, one goes
// out at once.
func (d *Device) SetPersistentKeepalive(pk PublicKey, seconds int) error {
	return d.dev.IpcSet(fmt.Sprintf("public_key=%s\nupdate_only=true\npersistent_keepalive_interval=%d\n", pk.hex(), seconds))
}

// SetPeerEndpoint points a peer at ep, as its last authenticated packet
// from there would: for a bind's own endpoints (the relay's agent
// connections), which SetEndpoint's text cannot name.
func (d *Device) SetPeerEndpoint(pk PublicKey, ep conn.Endpoint) {
	if p := d.dev.LookupPeer(device.NoisePublicKey(pk)); p != nil {
		p.SetEndpointFromPacket(ep)
	}
}

// Rebind closes and reopens the bind (its receive functions included), as
// wireguard-go does when the listen port changes.
func (d *Device) Rebind() error {
	if err := d.dev.BindUpdate(); err != nil {
		return fmt.Errorf("vpn: rebind: %w", err)
	}
	return nil
}

// RemovePeer removes a peer; unknown keys are ignored.
func (d *Device) RemovePeer(pk PublicKey) {
	d.dev.RemovePeer(device.NoisePublicKey(pk))
}

// Handshake drops the peer's session keys and sends a handshake initiation
// now. The agent calls it on every new relay connection: the relay may have
// restarted and forgotten the old session, and WireGuard alone would only
// notice after 5 to 15 s.
func (d *Device) Handshake(pk PublicKey) {
	if p := d.dev.LookupPeer(device.NoisePublicKey(pk)); p != nil {
		p.ExpireCurrentKeypairs()
		p.SendHandshakeInitiation(false)
	}
}

// ExpireSessions makes the peer's session keys unusable for sending, so
// that what is sent to it next waits for a new handshake. The relay calls
// it when a hub's last agent connection ends: the agent starts every
// connection with a new handshake, and if it restarted it no longer has
// the old keys, so a packet sent with them would be lost.
func (d *Device) ExpireSessions(pk PublicKey) {
	if p := d.dev.LookupPeer(device.NoisePublicKey(pk)); p != nil {
		p.ExpireCurrentKeypairs()
	}
}

// PeerStats is what WireGuard knows about a peer.
type PeerStats struct {
	LastHandshake time.Time // zero if never
	RxBytes       uint64
	TxBytes       uint64
	Endpoint      string
}

// Stats returns the stats of every peer, keyed by public key. It walks the
// whole UAPI dump: fine for an agent's one peer, not for per-request use on
// a relay with thousands.
func (d *Device) Stats() (map[PublicKey]PeerStats, error) {
	s, err := d.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("vpn: stats: %w", err)
	}
	out := map[PublicKey]PeerStats{}
	var (
		pk        PublicKey
		cur       *PeerStats
		sec, nsec int64
	)
	finish := func() {
		if cur == nil {
			return
		}
		if sec != 0 || nsec != 0 {
			cur.LastHandshake = time.Unix(sec, nsec)
		}
		out[pk] = *cur
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		if k == "public_key" {
			finish()
			raw, err := hex.DecodeString(v)
			if err != nil || len(raw) != 32 {
				return nil, fmt.Errorf("vpn: stats: bad key in UAPI dump")
			}
			pk, cur, sec, nsec = PublicKey(raw), &PeerStats{}, 0, 0
			continue
		}
		if cur == nil {
			continue // device-level lines come first
		}
		switch k {
		case "last_handshake_time_sec":
			sec, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			nsec, _ = strconv.ParseInt(v, 10, 64)
		case "rx_bytes":
			cur.RxBytes, _ = strconv.ParseUint(v, 10, 64)
		case "tx_bytes":
			cur.TxBytes, _ = strconv.ParseUint(v, 10, 64)
		case "endpoint":
			cur.Endpoint = v
		}
	}
	finish()
	return out, nil
}

// Close shuts the device down: the bind and the tun device are closed and
// every goroutine WireGuard started has ended when Close returns.
func (d *Device) Close() {
	d.dev.Close()
	<-d.dev.Wait()
}

// ErrNotConnected is what a conn.Bind's Send returns (wrapped or not)
// while its transport is between two connections to the relay: WireGuard
// retries on its own timers, so the device does not log it.
var ErrNotConnected = errors.New("not connected to the relay")

// expectedSendError reports errors wireguard-go logs that are normal while
// the transport reconnects: nothing to tell the hub owner about.
func expectedSendError(args []any) bool {
	for _, a := range args {
		if err, ok := a.(error); ok && (errors.Is(err, ErrNotConnected) || errors.Is(err, net.ErrClosed)) {
			return true
		}
	}
	return false
}

// wireguardErrorf is WireGuard's error log: prefixed, without the send
// errors that are normal while the transport reconnects, and at most one
// line per every.
func wireguardErrorf(logf logger.Logf, every time.Duration) logger.Logf {
	rl := logger.RateLimited(logger.WithPrefix(logf, "wireguard: "), every)
	return func(format string, args ...any) {
		if !expectedSendError(args) {
			rl(format, args...)
		}
	}
}
