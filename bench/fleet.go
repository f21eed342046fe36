package bench

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/uplink"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// Fleet is many hubs in one process, to load a relay with connected hubs.
// Each hub is what the agent binary runs minus the netstack and the port
// listeners: its own key, a real WireGuard device (vpn.Device) on a real
// uplink.TCPBind with its own TCP connection, Hello and handshake, so the relay
// sees exactly what a real agent sends while idle. In place of the netstack
// a null tun.Device never produces a packet and discards what it is given:
// the fleet's hubs carry no user traffic.
type Fleet struct {
	hubs []*fleetHub
}

// FleetConfig describes a Fleet.
type FleetConfig struct {
	Relay         string        // the relay's agent address, host:port
	RelayKey      vpn.PublicKey // pinned
	RelayTunnelIP netip.Addr    // default 100.96.0.1
	Keys          []vpn.PrivateKey
	// Wave is how many hubs start together; the next wave starts when
	// every hub of this one has completed its handshake, so that the
	// relay's handshake queue stays short (wireguard-go asks for cookies,
	// and rate-limits by source address, when it is long; all fleet hubs
	// share 127.0.0.1). Default 25.
	Wave int
	// Logf reports progress. Default: discard.
	Logf logger.Logf
}

type fleetHub struct {
	bind   *uplink.TCPBind
	dev    *vpn.Device
	ready  atomic.Pointer[vpn.Device]
	hsMu   sync.Mutex
	hsConn uint64
	relay  vpn.PublicKey
}

// handshake starts a handshake once per relay connection, as the agent
// does (agent.Agent.handshake).
func (h *fleetHub) handshake() {
	d := h.ready.Load()
	st := h.bind.Status()
	if d == nil || !st.Connected {
		return
	}
	h.hsMu.Lock()
	defer h.hsMu.Unlock()
	if h.hsConn == st.Connects {
		return
	}
	h.hsConn = st.Connects
	d.Handshake(h.relay)
}

// StartFleet starts every hub of cfg, wave by wave, and returns when all
// have completed a WireGuard handshake with the relay, or fails after 60 s
// without progress.
func StartFleet(cfg FleetConfig) (*Fleet, error) {
	if cfg.Wave <= 0 {
		cfg.Wave = 25
	}
	if !cfg.RelayTunnelIP.IsValid() {
		cfg.RelayTunnelIP = netip.MustParseAddr("100.96.0.1")
	}
	logf := cfg.Logf
	logf = logger.OrDiscard(logf)
	f := &Fleet{}
	for start := 0; start < len(cfg.Keys); start += cfg.Wave {
		wave := cfg.Keys[start:min(start+cfg.Wave, len(cfg.Keys))]
		var hubs []*fleetHub
		for _, k := range wave {
			h, err := startFleetHub(cfg, k)
			if err != nil {
				f.Close()
				return nil, err
			}
			f.hubs = append(f.hubs, h)
			hubs = append(hubs, h)
		}
		err := WaitFor(60*time.Second, fmt.Sprintf("hubs %d–%d to complete a handshake", start+1, start+len(wave)), func() (bool, error) {
			for _, h := range hubs {
				if !h.handshaken() {
					return false, nil
				}
			}
			return true, nil
		})
		if err != nil {
			f.Close()
			return nil, err
		}
		if n := len(f.hubs); n%250 == 0 || n == len(cfg.Keys) {
			logf("fleet: %d hubs connected", n)
		}
	}
	return f, nil
}

func startFleetHub(cfg FleetConfig, k vpn.PrivateKey) (*fleetHub, error) {
	h := &fleetHub{relay: cfg.RelayKey}
	h.bind = &uplink.TCPBind{
		Addr:      cfg.Relay,
		Hello:     wire.Hello{Version: wire.ProtocolVersion, Key: k.Public(), Software: "hubbench-fleet"},
		OnConnect: h.handshake,
	}
	dev, err := vpn.NewDevice(newNullTUN(), h.bind, k, nil)
	if err != nil {
		return nil, err
	}
	h.dev = dev
	peer := vpn.Peer{
		PublicKey:  cfg.RelayKey,
		AllowedIPs: []netip.Prefix{netip.PrefixFrom(cfg.RelayTunnelIP, cfg.RelayTunnelIP.BitLen())},
		Endpoint:   cfg.Relay,
	}
	if err := dev.AddPeer(peer); err != nil {
		dev.Close()
		return nil, err
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return nil, err
	}
	h.ready.Store(dev)
	h.handshake()
	return h, nil
}

func (h *fleetHub) handshaken() bool {
	st, err := h.dev.Stats()
	if err != nil {
		return false
	}
	return !st[h.relay].LastHandshake.IsZero()
}

// Len is the number of hubs started.
func (f *Fleet) Len() int { return len(f.hubs) }

// Connected counts the hubs whose relay connection is up now.
func (f *Fleet) Connected() int {
	n := 0
	for _, h := range f.hubs {
		if h.bind.Status().Connected {
			n++
		}
	}
	return n
}

// Close stops every hub.
func (f *Fleet) Close() {
	for _, h := range f.hubs {
		h.dev.Close()
	}
	f.hubs = nil
}

// nullTUN is a tun.Device with no traffic: Read blocks until Close and
// Write discards.
type nullTUN struct {
	events chan tun.Event
	closed chan struct{}
	once   sync.Once
}

var _ tun.Device = (*nullTUN)(nil)

func newNullTUN() *nullTUN {
	t := &nullTUN{events: make(chan tun.Event, 1), closed: make(chan struct{})}
	t.events <- tun.EventUp
	return t
}

func (t *nullTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	<-t.closed
	return 0, os.ErrClosed
}

func (t *nullTUN) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }
func (t *nullTUN) File() *os.File                               { return nil }
func (t *nullTUN) MTU() (int, error)                            { return 1420, nil }
func (t *nullTUN) Name() (string, error)                        { return "null", nil }
func (t *nullTUN) Events() <-chan tun.Event                     { return t.events }
func (t *nullTUN) BatchSize() int                               { return 1 }

func (t *nullTUN) Close() error {
	t.once.Do(func() {
		close(t.closed)
		close(t.events)
	})
	return nil
}

// WriteKeys writes private keys to path, one base64 key a line, mode 0600.
func WriteKeys(path string, keys []vpn.PrivateKey) error {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k.Base64())
		b.WriteByte('\n')
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// ReadKeys reads what WriteKeys wrote.
func ReadKeys(path string) ([]vpn.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var keys []vpn.PrivateKey
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		k, err := vpn.ParsePrivateKey(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, len(keys)+1, err)
		}
		keys = append(keys, k)
	}
	return keys, sc.Err()
}
