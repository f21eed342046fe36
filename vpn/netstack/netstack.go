// Package netstack is the userspace TCP/IP stack (gVisor's tcpip) that both
// ends of a hubtunnel run behind WireGuard: the agent listens on it for the
// fixed tunnel ports, the relay dials the hub's tunnel address through it.
//
// A Stack presents itself to wireguard-go as a tun.Device: the packets
// WireGuard decrypts are written into the stack, and the packets the stack
// sends are read out in batches for WireGuard to encrypt. Unlike
// golang.zx2c4.com/wireguard/tun/netstack it keeps its gVisor endpoints in
// reach, so every TCP connection gets keepalives (a vanished peer is found
// within minutes, not gVisor's default of hours), buffers are capped (gVisor's
// auto-tuning would otherwise grow them to 4 MiB a connection on a hub with
// 158 MB of RAM), and a connection can be aborted with an RST.
//
// The stack must never touch the host's network: it opens no sockets and has
// no route but its one NIC, the tun.Device. It never forwards packets, so a
// peer can reach only the stack's own addresses and never another peer. It
// speaks TCP only; other transport protocols are answered as unreachable.
package netstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Config describes a Stack. The zero value of every field but Addrs is a
// working default.
type Config struct {
	// Addrs are the stack's own tunnel addresses, IPv4 and/or IPv6.
	// Required.
	Addrs []netip.Addr

	// MTU of the tunnel. Default 1420, WireGuard's.
	MTU int

	// KeepAliveIdle is how long a TCP connection may be idle before the
	// stack probes the peer. Default 60s (gVisor's own is 2h).
	KeepAliveIdle time.Duration
	// KeepAliveInterval is the time between unanswered probes. Default 15s.
	KeepAliveInterval time.Duration
	// KeepAliveCount is how many unanswered probes reset the connection.
	// Default 4. A silent peer is thus detected after KeepAliveIdle +
	// KeepAliveInterval*KeepAliveCount (default 2m) if the connection was
	// idle; with data in flight, TCP's retransmissions give up instead.
	KeepAliveCount int

	// TCPBufferSize caps each TCP connection's send and receive buffer, in
	// bytes. Default 1 MiB; at least 4096.
	TCPBufferSize int

	// ReceiveBufferMax, if above TCPBufferSize, lets a connection's
	// receive buffer, and so the window it offers, grow up to it while its
	// reader keeps up (gVisor's receive buffer moderation, as Linux's): a
	// transfer over a fast path is bound by the data in flight, and the
	// pipeline of WireGuard, the link and both stacks holds more than 1 MiB
	// of it at a few hundred MB/s. A reader that does not keep up leaves
	// the buffer where it is. Default 0: TCPBufferSize.
	ReceiveBufferMax int

	// StreamSendBuffer, if set, is the send buffer of a connection that
	// streams (TCPConn.Streaming), for the same reason, while at most
	// StreamConns connections have it: the sender's buffer holds all it
	// has in flight, and a stream's fills up, so each such connection
	// holds that much more memory. The others keep TCPBufferSize. Default
	// 0: none.
	StreamSendBuffer int
	StreamConns      int

	// MaxInFlight bounds how many packets Device().Read hands to WireGuard
	// that the bind has not yet sent, as reported through Sent. wireguard-go
	// holds every such packet in its own 64 KiB buffer: at MTU 1420 one
	// connection's window of 1 MiB is ~760 packets, ~48 MiB of heap, while
	// they wait for encryption and sendmmsg. With a bound they wait here
	// instead, in the stack's buffers. Default 0: unbounded (for a bind
	// that does not call Sent). Packets WireGuard drops without sending
	// are forgotten after 5 ms without progress.
	MaxInFlight int

	// NeedsChecksum, if set, says whether the peer behind a destination
	// address verifies the TCP checksums of the packets it receives; only
	// the packets to such a peer get one (checksum.go). Default nil: every
	// packet gets one. WireGuard authenticates every packet, so a peer
	// that is one of ours does not need them (wire.Features).
	NeedsChecksum func(dst netip.Addr) bool
	// VerifyChecksums makes the stack verify the checksums of the packets
	// it receives, as hubtunnel before wire.Features did; for tests that
	// play such a peer. Default false: WireGuard has authenticated them.
	VerifyChecksums bool

	// LossyLink says that the link beneath the stack loses packets
	// (WireGuard over UDP); TCP then recovers from loss without RACK. Over
	// one TCP connection nothing beneath is lost: a retransmission timeout
	// there is spurious, and RACK resends less after it. Default false:
	// RACK, gVisor's default. (See configure.)
	LossyLink bool

	// AckDelay is how long a bare TCP ACK may wait for a packet of its
	// connection to carry it instead (delack.go). Default 10ms; negative:
	// ACKs never wait, as gVisor sends them.
	AckDelay time.Duration
}

const (
	defaultMTU               = 1420
	defaultKeepAliveIdle     = 60 * time.Second
	defaultKeepAliveInterval = 15 * time.Second
	defaultKeepAliveCount    = 4
	defaultTCPBufferSize     = 1 << 20
	minTCPBufferSize         = tcp.MinBufferSize

	nicID = 1

	// listenBacklog is how many established connections wait for Accept.
	listenBacklog = 128

	// maxRTO caps TCP's retransmission timeout, computed or backed off
	// (gVisor's default: 120 s). gVisor's retransmitted SYN and SYN-ACK
	// carry the first one's timestamp, so one lost handshake packet gives
	// the connection an RTT sample of 1 s or more on a path of
	// milliseconds: RTO 3-10 s, decaying only slowly. Each later loss of a
	// whole flight then waited that long, doubled per lost retransmission:
	// under 15 % loss a 2 MiB download over UDP stalled for more than 30 s
	// in most runs, 1 in 4 runs at 5 % (issue 16, e2e TestNetworkFaults).
	// 1 s is the RTO RFC 6298 starts every connection with, on a path it
	// knows nothing of, and above the RTT of the paths hubs are reached on;
	// on a slower one, a spurious retransmission costs one segment, which
	// gVisor detects by its timestamps (RFC 3522).
	maxRTO = time.Second
)

// withDefaults validates c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	if len(c.Addrs) == 0 {
		return c, errors.New("netstack.New: Config.Addrs is empty")
	}
	addrs := make([]netip.Addr, len(c.Addrs))
	hasV6 := false
	for i, a := range c.Addrs {
		a = a.Unmap()
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() {
			return c, fmt.Errorf("netstack.New: Config.Addrs[%d] %v is not a unicast address", i, c.Addrs[i])
		}
		addrs[i] = a
		hasV6 = hasV6 || a.Is6()
	}
	c.Addrs = addrs

	if c.MTU == 0 {
		c.MTU = defaultMTU
	}
	minMTU := 576
	if hasV6 {
		minMTU = 1280
	}
	if c.MTU < minMTU || c.MTU > 65535 {
		return c, fmt.Errorf("netstack.New: Config.MTU %d is outside %d..65535", c.MTU, minMTU)
	}

	for _, f := range []struct {
		name string
		d    *time.Duration
		def  time.Duration
	}{
		{"KeepAliveIdle", &c.KeepAliveIdle, defaultKeepAliveIdle},
		{"KeepAliveInterval", &c.KeepAliveInterval, defaultKeepAliveInterval},
	} {
		if *f.d < 0 {
			return c, fmt.Errorf("netstack.New: Config.%s %v is negative", f.name, *f.d)
		}
		if *f.d == 0 {
			*f.d = f.def
		}
	}
	if c.KeepAliveCount < 0 {
		return c, fmt.Errorf("netstack.New: Config.KeepAliveCount %d is negative", c.KeepAliveCount)
	}
	if c.KeepAliveCount == 0 {
		c.KeepAliveCount = defaultKeepAliveCount
	}

	if c.AckDelay == 0 {
		c.AckDelay = ackDelayDefault
	}

	if c.MaxInFlight < 0 {
		return c, fmt.Errorf("netstack.New: Config.MaxInFlight %d is negative", c.MaxInFlight)
	}
	if c.TCPBufferSize == 0 {
		c.TCPBufferSize = defaultTCPBufferSize
	}
	if c.TCPBufferSize < minTCPBufferSize {
		return c, fmt.Errorf("netstack.New: Config.TCPBufferSize %d is below %d", c.TCPBufferSize, minTCPBufferSize)
	}
	if c.ReceiveBufferMax < 0 || c.StreamSendBuffer < 0 || c.StreamConns < 0 {
		return c, fmt.Errorf("netstack.New: Config.ReceiveBufferMax %d, StreamSendBuffer %d or StreamConns %d is negative", c.ReceiveBufferMax, c.StreamSendBuffer, c.StreamConns)
	}
	return c, nil
}

// A Stack is a gVisor TCP/IP stack whose only NIC is the tun.Device returned
// by Device. Create it with New; Close it (directly, or by closing the
// WireGuard device that owns Device) to stop it.
type Stack struct {
	cfg    Config
	stack  *stack.Stack
	link   *link
	dev    *tunDevice
	events chan tun.Event
	hasV6  bool

	closeOnce sync.Once
	done      chan struct{} // closed by Close

	streams    atomic.Int32 // connections with Config.StreamSendBuffer (TCPConn.Streaming)
	sendBuffer int          // a connection's send buffer by default
}

// New creates a Stack with cfg. Its Device reports tun.EventUp once.
func New(cfg Config) (*Stack, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}

	s := &Stack{
		cfg: cfg,
		stack: stack.New(stack.Options{
			NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
			TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
		}),
		link:   newLink(cfg.MTU, cfg.MaxInFlight, cfg.VerifyChecksums, cfg.NeedsChecksum, cfg.AckDelay),
		events: make(chan tun.Event, 1),
		done:   make(chan struct{}),
	}
	s.dev = &tunDevice{s: s}
	if err := s.configure(); err != nil {
		s.stack.Destroy()
		s.link.Close()
		return nil, err
	}
	s.events <- tun.EventUp
	return s, nil
}

// configure sets the stack's TCP options and brings up its NIC, addresses
// and routes.
func (s *Stack) configure() error {
	size := s.cfg.TCPBufferSize
	sack := tcpip.TCPSACKEnabled(true) // off by default in gVisor
	sndBuf := tcpip.TCPSendBufferSizeRangeOption{
		Min:     minTCPBufferSize,
		Default: min(size, tcp.DefaultSendBufferSize),
		Max:     size, // also where gVisor's send buffer tuning stops
	}
	rcvBuf := tcpip.TCPReceiveBufferSizeRangeOption{
		Min:     minTCPBufferSize,
		Default: min(size, tcp.DefaultReceiveBufferSize),
		Max:     max(size, s.cfg.ReceiveBufferMax),
	}
	s.sendBuffer = sndBuf.Default
	moderate := tcpip.TCPModerateReceiveBufferOption(rcvBuf.Max > size)
	rto := tcpip.TCPMaxRTOOption(maxRTO)
	// Loss recovery by what the link loses. gVisor's default, RACK, crawls
	// after a burst loss: RACK marks the hole lost, but the recovery's pipe
	// still counts it in flight unless three segments above it were
	// SACKed, so after each retransmission timeout it sends the one
	// segment the timeout resends and one more on entering recovery
	// (TestBurstLoss: 45 s for a burst of 440 packets, 0.25 s without
	// RACK; e2e's burst loss over UDP: 16 MiB not through in 30 s, 11-12
	// MB/s without). Without RACK (TCPRecovery 0) a spurious timeout
	// resends the whole flight instead: on a 2 Mbit/s uplink whose queue
	// delays the tunnel's packets past maxRTO, e2e's download over the TCP
	// transport fell from ~210 to ~160 KB/s, with 1.55 bytes on the wire
	// per byte (1.18 with RACK); over UDP, where the queue also overflows,
	// 211-230 against 230 KB/s. So RACK stays where only spurious timeouts
	// happen, and goes where packets are lost. Without RACK reordering
	// costs more (duplicate ACKs, not time, say a segment is lost): 1 MiB
	// with a quarter of the packets 50 ms late over UDP took 7.3 s, not 5.4.
	recovery := tcpip.TCPRACKLossDetection
	if s.cfg.LossyLink {
		recovery = 0
	}
	for _, opt := range []tcpip.SettableTransportProtocolOption{&sack, &sndBuf, &rcvBuf, &moderate, &rto, &recovery} {
		if err := s.stack.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			return fmt.Errorf("netstack.New: TCP option %T: %v", opt, err)
		}
	}

	// gVisor, like Linux, answers out-of-window segments, keepalive probes
	// among them, at most every 500ms per connection. Probes sent faster
	// than that would go unanswered and reset a live connection.
	limit := min(500*time.Millisecond, s.cfg.KeepAliveIdle/2, s.cfg.KeepAliveInterval/2)
	if err := s.stack.SetOption(stack.TCPInvalidRateLimitOption(limit)); err != nil {
		return fmt.Errorf("netstack.New: invalid-segment rate limit: %v", err)
	}

	if err := s.stack.CreateNIC(nicID, s.link); err != nil {
		return fmt.Errorf("netstack.New: create NIC: %v", err)
	}
	var hasV4 bool
	for _, a := range s.cfg.Addrs {
		proto := ipv4.ProtocolNumber
		if a.Is6() {
			proto = ipv6.ProtocolNumber
			s.hasV6 = true
		} else {
			hasV4 = true
		}
		pa := tcpip.ProtocolAddress{
			Protocol:          proto,
			AddressWithPrefix: tcpip.AddrFromSlice(a.AsSlice()).WithPrefix(),
		}
		if err := s.stack.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			return fmt.Errorf("netstack.New: add address %v: %v", a, err)
		}
	}
	if hasV4 {
		s.stack.AddRoute(tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: nicID})
	}
	if s.hasV6 {
		s.stack.AddRoute(tcpip.Route{Destination: header.IPv6EmptySubnet, NIC: nicID})
	}
	return nil
}

// Sent tells the stack that the bind has handed n packets read from Device
// to the network (see Config.MaxInFlight). It never blocks; without
// MaxInFlight it does nothing.
func (s *Stack) Sent(n int) { s.link.inFlight.Leave(n) }

// Device returns the stack as a tun.Device, to hand to device.NewDevice
// (possibly wrapped by a packet filter). It is the same value on every call.
// Closing it closes the Stack.
func (s *Stack) Device() tun.Device { return s.dev }

// Close aborts every connection and listener, stops the stack's goroutines
// and closes Device: its Read returns os.ErrClosed and its event channel is
// closed. Close is idempotent and always returns nil.
func (s *Stack) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.stack.Close() // aborts all endpoints; their RSTs may still be read
		s.stack.Wait()  // waits for TCP's workers and removes the NIC
		s.link.Close()
		close(s.events)
	})
	return nil
}

// closed reports whether Close was called.
func (s *Stack) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Stats are a Stack's counters since New.
type Stats struct {
	PacketsIn, BytesIn   uint64 // IP packets written to Device (from WireGuard)
	PacketsOut, BytesOut uint64 // IP packets read from Device (to WireGuard)
	Dropped              uint64 // packets dropped by the link (queue full, not IP) or the stack (malformed, not ours, receive queue full)
	AcksCarried          uint64 // bare ACKs not sent: a later packet of their connection carried them (delack.go)
	Joined               uint64 // packets in copied into the one before them, so the stack saw one (join.go)
	TCPConns             uint64 // TCP connections currently open (established up to fully closed)
	Retransmits          uint64 // TCP segments sent again: lost on the way, or thought lost
	Timeouts             uint64 // TCP retransmission timeouts: losses repaired only after a wait of at least 200 ms
}

// Stats returns the stack's counters.
func (s *Stack) Stats() Stats {
	l, st := s.link, s.stack.Stats()
	return Stats{
		PacketsIn:   l.packetsIn.Load(),
		BytesIn:     l.bytesIn.Load(),
		PacketsOut:  l.packetsOut.Load(),
		BytesOut:    l.bytesOut.Load(),
		Dropped:     l.dropped.Load() + st.DroppedPackets.Value(),
		AcksCarried: l.acksCarried.Load(),
		Joined:      l.joined.Load(),
		TCPConns:    st.TCP.CurrentConnected.Value(),
		Retransmits: st.TCP.Retransmits.Value(),
		Timeouts:    st.TCP.Timeouts.Value(),
	}
}

// ListenTCP listens on port on all of the stack's addresses.
func (s *Stack) ListenTCP(port uint16) (*Listener, error) {
	if s.closed() {
		return nil, fmt.Errorf("netstack.ListenTCP: %w", net.ErrClosed)
	}
	// One endpoint serves both families: an IPv6 one that also accepts
	// IPv4 when the stack has IPv6 addresses.
	proto := ipv4.ProtocolNumber
	if s.hasV6 {
		proto = ipv6.ProtocolNumber
	}
	wq := new(waiter.Queue)
	ep, terr := s.stack.NewEndpoint(tcp.ProtocolNumber, proto, wq)
	if terr != nil {
		return nil, fmt.Errorf("netstack.ListenTCP: port %d: %v", port, terr)
	}
	if s.hasV6 {
		ep.SocketOptions().SetV6Only(false)
	}
	if terr := ep.Bind(tcpip.FullAddress{Port: port}); terr != nil {
		ep.Close()
		return nil, fmt.Errorf("netstack.ListenTCP: port %d: %w", port, toErrno(terr))
	}
	if terr := ep.Listen(listenBacklog); terr != nil {
		ep.Close()
		return nil, fmt.Errorf("netstack.ListenTCP: port %d: %w", port, toErrno(terr))
	}
	return &Listener{s: s, ep: ep, wq: wq, port: port, done: make(chan struct{})}, nil
}

// DialTCP connects to dst through the tunnel. ctx bounds the handshake only.
func (s *Stack) DialTCP(ctx context.Context, dst netip.AddrPort) (*TCPConn, error) {
	if s.closed() {
		return nil, opError("dial", dst, net.ErrClosed)
	}
	addr := dst.Addr().Unmap()
	proto := ipv4.ProtocolNumber
	if addr.Is6() {
		proto = ipv6.ProtocolNumber
	}
	wq := new(waiter.Queue)
	ep, terr := s.stack.NewEndpoint(tcp.ProtocolNumber, proto, wq)
	if terr != nil {
		return nil, opError("dial", dst, toErrno(terr))
	}

	// Register before Connect so the writable event cannot be missed.
	entry, ch := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)

	terr = ep.Connect(tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(addr.AsSlice()), Port: dst.Port()})
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		select {
		case <-ch:
			terr = ep.LastError()
		case <-ctx.Done():
			ep.Close()
			return nil, opError("dial", dst, ctx.Err())
		case <-s.done:
			ep.Close()
			return nil, opError("dial", dst, net.ErrClosed)
		}
	}
	if terr != nil {
		ep.Close()
		return nil, opError("dial", dst, toErrno(terr))
	}
	c, err := s.newConn(ep, wq)
	if err != nil {
		return nil, opError("dial", dst, err)
	}
	return c, nil
}

func opError(op string, dst netip.AddrPort, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Addr: net.TCPAddrFromAddrPort(dst), Err: err}
}

// tune applies the per-connection options of cfg to an established endpoint.
// Accepted endpoints do not inherit keepalive settings from their listener,
// so this runs on every connection, accepted or dialed.
func (s *Stack) tune(ep tcpip.Endpoint) error {
	idle := tcpip.KeepaliveIdleOption(s.cfg.KeepAliveIdle)
	intvl := tcpip.KeepaliveIntervalOption(s.cfg.KeepAliveInterval)
	for _, opt := range []tcpip.SettableSocketOption{&idle, &intvl} {
		if err := ep.SetSockOpt(opt); err != nil {
			return fmt.Errorf("socket option %T: %v", opt, err)
		}
	}
	if err := ep.SetSockOptInt(tcpip.KeepaliveCountOption, s.cfg.KeepAliveCount); err != nil {
		return fmt.Errorf("keepalive count: %v", err)
	}
	ep.SocketOptions().SetKeepAlive(true) // starts the timer
	return nil
}
