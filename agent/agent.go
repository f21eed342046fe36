// Package agent is hubtunnel's agent: it runs on the hub, keeps the tunnel
// to the relay up and forwards the fixed port map to the hub's services.
//
// The data path, inbound (a user's request):
//
//  1. The relay connection (uplink.TCPBind, or UDP) delivers a WireGuard message.
//  2. wireguard-go decrypts it; only the pinned relay key can have sent it.
//  3. The firewall drops the packet unless its source is in allowed_cidrs
//     and it is TCP to a mapped port (ICMP echo for diagnosis), and counts it.
//  4. The netstack (gVisor, in this process) hands the TCP connection to the
//     listener on that tunnel port.
//  5. On a CCU, the owner's firewall settings (ccufirewall: the levels of the
//     XML-RPC APIs and the script engine, the allowed ranges) decide as for
//     a LAN client with the connection's tunnel source address; a refused
//     connection is reset before anything reaches the hub (ccu.go).
//  6. portmap dials the port's local target from the hub's LAN address
//     (targets.local_source), never from loopback, which a CCU trusts more
//     than its LAN, and splices both ways.
//
// Outbound is the reverse, without the firewall. The agent never dials
// anything but the relay and its configured local targets: it must never
// become a way into the rest of the LAN.
package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hubtunnel/hubtunnel/dnsfix"
	"github.com/hubtunnel/hubtunnel/firewall"
	"github.com/hubtunnel/hubtunnel/hubinfo"
	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/panel"
	"github.com/hubtunnel/hubtunnel/portmap"
	"github.com/hubtunnel/hubtunnel/selfupdate"
	"github.com/hubtunnel/hubtunnel/stats"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/vpn/netstack"
	"github.com/hubtunnel/hubtunnel/wire"
)

// Agent is a running agent. New, then Start; Close stops it.
type Agent struct {
	cfg     *Config
	version string
	logf    logger.Logf
	hub     hubinfo.Hub
	upd     *selfupdate.Updater // nil without a state folder (a config built in code)
	token   string              // the local API's (update.go); "" refuses every action
	restart chan Restart        // a binary to run in place of this one

	// keyMu guards the keys, which change over time (keys.go).
	keyMu        sync.Mutex
	key          vpn.PrivateKey
	relayKey     vpn.PublicKey // the relay's, as pinned now
	relayNext    vpn.PublicKey // the relay's announced next key
	keysLearned  time.Time     // when the relay was last asked for its keys
	relaySwapped time.Time     // when a UDP hub last tried the relay's other key
	name, url    string        // the hub's name and WebUI URL at the relay (learnName)
	// rotatedFrom is the hub's key before a RotateKey whose commit went
	// out but got no answer, until the new key has a handshake: a relay
	// that then does not know the new key did not take it (onRefused).
	rotatedFrom *vpn.PrivateKey
	rotating    sync.Mutex // one RotateKey at a time
	// hubInfo is the relay's last HubInfo not yet taken by keysLoop, which
	// hubInfoWake wakes (keys.go onHubInfo).
	hubInfo     atomic.Pointer[hubInfoOn]
	hubInfoWake chan struct{}
	stack       *netstack.Stack
	fw          *firewall.Device
	tr          transport // how the relay is reached (transport.go); set before dev
	dev         *vpn.Device
	dns         atomic.Pointer[dnsfix.Resolver] // nil when the relay is an IP address
	fwd         portmap.Forwarder
	ccu         *ccuGuard         // the CCU's firewall settings; nil when [ccu] firewall_file is off
	lan         func() netip.Addr // finds the hub's LAN address for local_source "auto"; nil = portmap.FindLANAddr

	stats *stats.Recorder // the traffic record (stats.go); set by Start
	feed  statsFeed

	listeners []net.Listener
	ui        *http.Server
	uiLn      net.Listener

	enrolling sync.Mutex // held by an enrollment; kept after a success (the agent restarts)
	panelMu   sync.Mutex // held while the panel saves settings (panel.go)
	logs      logRing    // the last log lines, for the panel

	closing chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// New prepares an agent from a validated config.
func New(cfg *Config, version string, logf logger.Logf) *Agent {
	a := &Agent{cfg: cfg, version: version, closing: make(chan struct{}), restart: make(chan Restart, 1), hubInfoWake: make(chan struct{}, 1)}
	logf = a.logs.tee(logf) // the panel shows the last lines
	a.logf = logf
	a.fwd = portmap.Forwarder{Logf: logf}
	a.name = cfg.Name
	if e := cfg.Enrollment(); e != nil {
		a.url = e.URL
	}
	a.hub = hubinfo.Detect()
	return a
}

// Start brings up the status API and, if enabled, the tunnel. On error
// everything it opened is closed again.
func (a *Agent) Start() (err error) {
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if a.uiLn, err = net.Listen("tcp", a.cfg.UIListen); err != nil {
		return fmt.Errorf("agent: ui_listen: %w", err)
	}
	if ap, err := netip.ParseAddrPort(a.uiLn.Addr().String()); err == nil && !ap.Addr().IsLoopback() {
		a.logf("agent: warning: status API listens on %s, not loopback", ap)
	}
	a.checkStateFiles()
	a.openStats()
	if len(a.cfg.overridden) > 0 {
		a.logf("agent: %s overrides %s of %s", EnrollmentFile, strings.Join(a.cfg.overridden, ", "), filepath.Base(a.cfg.path))
	}
	switch {
	case !a.cfg.Enrolled():
		a.logf("agent: not enrolled: enter the code from your relay's portal (hubtunnel enroll CODE, or the addon's settings page)")
	case a.cfg.IsEnabled():
		if err := a.startTunnel(); err != nil {
			return err
		}
	default:
		a.logf("agent: tunnel disabled in config")
	}
	if a.cfg.dir != "" {
		a.upd = a.newUpdater()
		a.upd.Start()
	}
	// Serve only now: Status reads the fields startTunnel sets. (The port
	// was taken first, so a clash still stops the agent before the tunnel.)
	mux := http.NewServeMux()
	mux.Handle("/", localapi.Handler(a, a.cfg.UIListen))
	mux.Handle(panel.Prefix, a.panelHandler())
	a.ui = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.ui.Serve(a.uiLn)
	}()
	if a.dev != nil {
		a.wg.Add(1)
		go a.keysLoop() // reads the status, which is complete only now
		a.wg.Add(1)
		go a.statsLoop()
	}
	return nil
}

// startTunnel brings the tunnel up: key → netstack → firewall → transport →
// WireGuard device → the relay peer → a listener per mapped port → up, and
// then the transport starts its part (transport.go).
func (a *Agent) startTunnel() error {
	cfg := a.cfg
	k, created, err := loadOrCreateKey(cfg.PrivateKeyFile)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.key, a.relayKey, a.relayNext = k, cfg.relayKey, cfg.relayNext
	if created {
		a.logf("agent: created this hub's key in %s; public key %s", cfg.PrivateKeyFile, k.Public())
	}

	// Both transports report what they sent; see maxInFlight.
	// TCP checksums as the transport says (wire.Features); it comes after
	// the stack, before any packet.
	var tr atomic.Pointer[transport]
	needs := func(dst netip.Addr) bool { t := tr.Load(); return t == nil || (*t).needsChecksum(dst) }
	// Over UDP the tunnel's packets can be lost, over the relay connection
	// only delayed: the stack's TCP recovers from loss accordingly.
	scfg := netstack.Config{
		Addrs: []netip.Addr{cfg.tunnelIP}, MTU: cfg.MTU, MaxInFlight: inFlight(cfg.Transport), NeedsChecksum: needs,
		StreamSendBuffer: streamSendBuffer, StreamConns: streamConns, LossyLink: cfg.Transport == "udp",
	}
	if a.stack, err = netstack.New(scfg); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.fw = firewall.Wrap(a.stack.Device(), a.policy(), a.logf)

	if err := a.startDNS(); err != nil {
		return err
	}
	a.tr, err = newTransport(cfg, transportEnv{
		dns:        a.dns.Load(),
		hello:      wire.Hello{Version: wire.ProtocolVersion, Key: k.Public(), Software: a.software()},
		key:        k,
		sent:       a.stack.Sent,
		relayHello: a.onRelayHello,
		hubInfo:    a.onHubInfo,
		refused:    a.onRefused,
		logf:       a.logf,
	})
	if err != nil {
		return err
	}
	cur := a.tr
	tr.Store(&cur)
	if a.dev, err = vpn.NewDevice(a.tr.wrapTUN(a.fw), a.tr.bind(), k, a.logf); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	// The relay is the only peer; every source is accepted by WireGuard
	// so that the firewall sees, drops and counts what is not allowed.
	if err := a.dev.AddPeer(a.relayPeer(a.relayKey)); err != nil {
		return fmt.Errorf("agent: %w", err)
	}

	a.fwd.LocalSource = cfg.Targets.SourceFunc(a.lan, a.logf)
	a.fwd.MaxSessions = cfg.MaxSessions
	if f := cfg.CCU.firewallFile; f != "" {
		a.ccu = newCCUGuard(f, a.logf)
		a.ccu.file.Current() // logs what is applied, once
	}
	for _, r := range cfg.routes {
		tl, err := a.stack.ListenTCP(r.Port)
		if err != nil {
			return fmt.Errorf("agent: tunnel port %d: %w", r.Port, err)
		}
		a.listeners = append(a.listeners, tl)
		ln := net.Listener(tl)
		if a.ccu != nil {
			ln = a.ccu.listener(ln, r)
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := a.fwd.Serve(ln, r); err != nil {
				a.logf("agent: port %d: %v", r.Port, err)
			}
		}()
	}
	if err := a.dev.Up(); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.tr.start(a.dev)
	a.logf("agent: hub %q (%s), tunnel address %s, relay %s over %s, %d ports", cfg.Name, a.hub, cfg.tunnelIP, cfg.Relay, cfg.Transport, len(cfg.routes))
	return nil
}

func (a *Agent) policy() firewall.Policy {
	p := firewall.Policy{Allowed: a.cfg.allowed, AllowPing: true}
	for _, r := range a.cfg.routes {
		p.TCPPorts = append(p.TCPPorts, r.Port)
	}
	// The relay's hub API (keys over time, keys.go), and its release
	// server, which is usually the same.
	p.Services = append(p.Services, netip.AddrPortFrom(a.cfg.relayTunnelIP, hubAPIPort))
	if svc := a.cfg.releaseService(); svc.IsValid() && svc != p.Services[0] {
		p.Services = append(p.Services, svc)
	}
	return p
}

// software is what the Hello tells the relay: this version and the hub.
func (a *Agent) software() string { return Software(a.version, a.hub) }

// Software is what an agent of this version on hub tells the relay of
// itself (in its Hello, and when it enrolls).
func Software(version string, hub hubinfo.Hub) string {
	return fmt.Sprintf("hubtunnel/%s (%s)", version, hub)
}

// requestRestart asks whoever runs the agent to run binary in its place
// (the updater's Restart).
func (a *Agent) requestRestart(binary string) {
	a.requestRestartFor(binary, "update: starting the installed version")
}

func (a *Agent) requestRestartFor(binary, why string) {
	select {
	case a.restart <- Restart{Binary: binary, Why: why}:
	default:
	}
}

// Restart is a request to run Binary in place of this process, with the
// same arguments.
type Restart struct {
	Binary string
	Why    string // a log line
}

// RestartRequested delivers a binary to run in place of this process (with
// the same arguments): the installed version changed under a running agent
// whose update was interrupted and rolled back, or the hub enrolled and the
// agent must start again to connect.
func (a *Agent) RestartRequested() <-chan Restart { return a.restart }

// startDNS sets up dnsfix for the relay's name, unless it is an address.
func (a *Agent) startDNS() error {
	if !a.cfg.relayIsName() {
		return nil
	}
	r, err := a.cfg.DNSResolver(a.logf)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.dns.Store(r)
	return nil
}

// maxInFlight is how many packets the agent lets wait inside WireGuard on
// the way out (netstack.Config.MaxInFlight), and on the UDP transport also
// on the way in (uplink.UDPBind.Inbound): 128 of wireguard-go's 64 KiB
// buffers, 8 MiB, each way. Unbounded, a bulk download at MTU 1420 filled
// ~48 MiB of them, beyond the agent's memory limit, and the GC ran
// without pause; on the TCP transport (then at MTU 8000) 8 downloads held
// 21 MiB. Inbound on the TCP transport stays unbounded: at MTU 8000 an
// upload of 1.8 Gbit/s held 2 MiB of buffers there.
//
// Over UDP each of those buffers holds one packet of at most the tunnel's
// MTU (1,420 bytes), so that transport lets half as many wait
// (maxInFlightUDP, 4 MiB each way). The agent's peak RSS over rounds of 1
// and 8 downloads and 50 connections' requests, with the 40 MiB memory
// limit of then: 47.3-48.2 MB at 128 (BRIEF.md allows 48), 43.6-44.4 at
// 64; at 64 with today's 36 MiB 38.2-41.8. CPU per GB and the downloads'
// rates the same within the rounds' spread.
const (
	maxInFlight    = 128
	maxInFlightUDP = 64
)

// inFlight is maxInFlight for the transport.
func inFlight(transport string) int {
	if transport == "udp" {
		return maxInFlightUDP
	}
	return maxInFlight
}

// A download is bound by the data in flight: the agent's send buffer
// holds all of it, and at the stack's default of 1 MiB a download over the
// loopback bench ran at 280 MB/s where 2 MiB (with the relay's larger
// window, relay.stackConfig) took it to 400. A stream fills its buffer, so
// only two connections at a time get the larger one
// (netstack.Config.StreamSendBuffer): at most 2 MiB more than with 1 MiB
// each, however many downloads run.
const (
	streamSendBuffer = 2 << 20
	streamConns      = 2
)

// Close stops the tunnel and the status API and waits for everything the
// agent started. It is idempotent.
func (a *Agent) Close() error {
	a.once.Do(func() {
		close(a.closing)
		if a.upd != nil {
			a.upd.Close()
		}
		for _, ln := range a.listeners {
			ln.Close()
		}
		a.fwd.Close()
		if a.tr != nil {
			a.tr.close()
		}
		if a.dev != nil {
			a.dev.Close()
		}
		if a.stack != nil {
			a.stack.Close()
		}
		if a.ui != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			a.ui.Shutdown(ctx)
			cancel()
		} else if a.uiLn != nil {
			a.uiLn.Close() // Start failed before serving
		}
		a.wg.Wait()
		a.closeStats() // after the relay connection closed: it is counted as it closes
	})
	return nil
}

// Status reports the agent's state now.
func (a *Agent) Status() localapi.Status {
	s := localapi.Status{
		State:     localapi.StateDisabled,
		Relay:     a.cfg.Relay,
		Transport: a.cfg.Transport,
		RelayTLS:  a.cfg.RelayTLS,
		Version:   a.version,
		Hub:       a.hub,
	}
	if a.cfg.Enrolled() {
		s.TunnelIP = a.cfg.tunnelIP.String()
	} else {
		s.State = localapi.StateUnenrolled
	}
	if e := a.cfg.Enrollment(); e != nil {
		s.Enrolled = e.Enrolled
	}
	a.keyMu.Lock()
	s.Name, s.URL = a.name, a.url
	a.keyMu.Unlock()
	if a.upd != nil {
		u := a.upd.Status()
		s.Update = &u
	}
	if a.ccu != nil {
		s.CCUFirewall = a.ccu.status()
	}
	if a.cfg.dir != "" {
		s.Supervisor = readSupervisor(a.cfg.dir)
	}
	s.Ignored = a.ignoredFiles()
	a.statsStatus(&s) // today, this month, and the overhead as the network sees it
	if a.dev == nil {
		return s
	}
	s.State = "connecting"
	a.keyMu.Lock()
	key, relayKey := a.key, a.relayKey
	a.keyMu.Unlock()
	s.PublicKey = key.Public().String()
	st, _ := a.dev.Stats()
	ps := st[relayKey]
	s.LastHandshake = ps.LastHandshake
	s.SessionsActive = a.fwd.Active()
	s.SessionsTotal, _, _ = a.fwd.Stats()
	s.SessionsRefused = a.fwd.Refused()
	s.DroppedPackets = a.fw.Stats().Dropped()
	ts := a.stack.Stats()
	s.TCPRetransmits, s.TCPTimeouts = ts.Retransmits, ts.Timeouts
	if r := a.dns.Load(); r != nil {
		if t := r.Last(); t != nil && t.Source != "" {
			s.DNSSource = string(t.Source)
			for _, ad := range t.Order {
				s.DNSAnswer = append(s.DNSAnswer, ad.String())
			}
		}
	}
	ls := a.tr.status(ps)
	s.LastError, s.RelaySoftware, s.Route = ls.lastError, ls.relaySoftware, ls.route
	s.LastErrorKind, s.LastErrorDetail = ls.lastErrorKind, ls.lastErrorDetail
	s.BytesRx, s.BytesTx = ls.rx, ls.tx
	if ls.connected {
		s.State, s.ConnectedSince = "connected", ls.since
	}
	return s
}
