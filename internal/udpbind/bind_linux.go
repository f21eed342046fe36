package udpbind

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/hubtunnel/hubtunnel/internal/sockio"
)

// New returns a closed Bind.
func New() conn.Bind { return &Bind{} }

// Bind is WireGuard's UDP bind on Linux: one socket for IPv4 and one for
// IPv6 on the same port, read with recvmmsg(2) and written with
// sendmmsg(2) through the sockets' syscall.RawConn, without telling the
// runtime (sockio.Recvmmsg). It does what wireguard-go's StdNetBind does —
// the same socket options, UDP GSO and GRO where the kernel has them,
// replies sent from the address a datagram came to — but StdNetBind's
// calls go through golang.org/x/net and enter the runtime's syscall state
// each time, which on one P wakes the runtime's monitor thread and hands
// the P to another thread (see sockio): a fifth of the agent's CPU and of
// the relay's during a download over UDP.
//
// A send of equal-sized packets to one endpoint goes as one datagram with
// UDP_SEGMENT, the packets' own buffers as its iovecs (StdNetBind copies
// them into the first one's).
type Bind struct {
	mu     sync.Mutex
	v4, v6 *socket // nil while closed, or without the family

	sends sync.Pool // *sender
}

var _ conn.Bind = (*Bind)(nil)

// batchSize is what BatchSize reports, as StdNetBind does on Linux
// (conn.IdealBatchSize): vpn.Staging reads this many at once.
const batchSize = conn.IdealBatchSize

// maxSegments is the most datagrams one UDP_SEGMENT send may hold and one
// UDP_GRO read may return: UDP_MAX_SEGMENTS of older kernels, which newer
// ones raised; every kernel takes this many.
const maxSegments = 64

// bufferSize is what the sockets' send and receive buffers are set to, as
// StdNetBind sets them: up to net.core.[rw]mem_max, beyond it with
// CAP_NET_ADMIN.
const bufferSize = 7 << 20

// ctrlSize holds a PKTINFO control message and a UDP_SEGMENT or UDP_GRO
// one.
var ctrlSize = unix.CmsgSpace(unix.SizeofInet6Pktinfo) + unix.CmsgSpace(2)

type socket struct {
	c   *net.UDPConn
	rc  syscall.RawConn
	gso atomic.Bool // send with UDP_SEGMENT; off once the device refused it
	gro bool        // the kernel hands coalesced datagrams (UDP_GRO)
}

func (b *Bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.v4 != nil || b.v6 != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	var v4, v6 *socket
	for tries := 0; ; tries++ {
		var err error
		p := port
		v4, err = listen("udp4", p)
		if err != nil && !errors.Is(err, syscall.EAFNOSUPPORT) {
			return nil, 0, err
		}
		if v4 != nil {
			p = uint16(v4.c.LocalAddr().(*net.UDPAddr).Port)
		}
		// IPv6 on the port IPv4 got.
		v6, err = listen("udp6", p)
		if err == nil || errors.Is(err, syscall.EAFNOSUPPORT) {
			break
		}
		if v4 != nil {
			v4.c.Close()
		}
		if port != 0 || !errors.Is(err, syscall.EADDRINUSE) || tries >= 100 {
			return nil, 0, err
		}
	}
	var fns []conn.ReceiveFunc
	var got uint16
	for _, s := range []*socket{v4, v6} {
		if s != nil {
			fns = append(fns, newReceiver(s).receive)
			got = uint16(s.c.LocalAddr().(*net.UDPAddr).Port)
		}
	}
	if len(fns) == 0 {
		return nil, 0, syscall.EAFNOSUPPORT
	}
	b.v4, b.v6 = v4, v6
	return fns, got, nil
}

// listen opens a socket of network ("udp4", "udp6") on port, with
// StdNetBind's options.
func listen(network string, port uint16) (*socket, error) {
	lc := net.ListenConfig{Control: func(network, _ string, rc syscall.RawConn) error {
		var err error
		cerr := rc.Control(func(fd uintptr) {
			f := int(fd)
			_ = unix.SetsockoptInt(f, unix.SOL_SOCKET, unix.SO_RCVBUF, bufferSize)
			_ = unix.SetsockoptInt(f, unix.SOL_SOCKET, unix.SO_SNDBUF, bufferSize)
			_ = unix.SetsockoptInt(f, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bufferSize)
			_ = unix.SetsockoptInt(f, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, bufferSize)
			if network == "udp6" {
				if err = unix.SetsockoptInt(f, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1); err == nil {
					err = unix.SetsockoptInt(f, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
				}
			} else {
				err = unix.SetsockoptInt(f, unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
			}
			// Kernels before 5.12 cannot say whether UDP_GRO is on
			// (getsockopt), and their GRO had bugs: only from 5.12.
			if err == nil && groKernel() {
				_ = unix.SetsockoptInt(f, unix.IPPROTO_UDP, unix.UDP_GRO, 1)
			}
		})
		if cerr != nil {
			return cerr
		}
		return err
	}}
	pc, err := lc.ListenPacket(context.Background(), network, ":"+strconv.Itoa(int(port)))
	if err != nil {
		return nil, err
	}
	c := pc.(*net.UDPConn)
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, err
	}
	s := &socket{c: c, rc: rc}
	rc.Control(func(fd uintptr) {
		_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		s.gso.Store(err == nil)
		on, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO)
		s.gro = err == nil && on == 1
	})
	return s, nil
}

var groKernel = sync.OnceValue(func() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var v [2]int
	i := 0
	for _, c := range u.Release {
		if c >= '0' && c <= '9' {
			v[i] = v[i]*10 + int(c-'0')
		} else if i++; i == len(v) {
			break
		}
	}
	return v[0] > 5 || v[0] == 5 && v[1] >= 12
})

func (b *Bind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var err error
	for _, s := range []*socket{b.v4, b.v6} {
		if s != nil {
			if e := s.c.Close(); err == nil {
				err = e
			}
		}
	}
	b.v4, b.v6 = nil, nil
	return err
}

// SetMark sets SO_MARK on both sockets (it needs CAP_NET_ADMIN).
func (b *Bind) SetMark(mark uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range []*socket{b.v4, b.v6} {
		if s == nil {
			continue
		}
		var err error
		if cerr := s.rc.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		}); cerr != nil {
			return cerr
		}
		if err != nil {
			return os.NewSyscallError("setsockopt SO_MARK", err)
		}
	}
	return nil
}

func (b *Bind) BatchSize() int { return batchSize }

func (b *Bind) ParseEndpoint(s string) (conn.Endpoint, error) {
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return &Endpoint{AddrPort: a}, nil
}

// mmsgs are the headers of one recvmmsg or sendmmsg call, each message
// with an iovec of its own (a send's GSO datagram takes several in a row)
// and ctrlSize bytes of control messages.
type mmsgs struct {
	hs   []unix.Mmsghdr
	iovs []unix.Iovec
	ctrl []byte
}

// grow makes room for n messages; it reports whether it made new arrays.
func (m *mmsgs) grow(n int) bool {
	if len(m.hs) >= n {
		return false
	}
	m.hs = make([]unix.Mmsghdr, n)
	m.iovs = make([]unix.Iovec, n)
	m.ctrl = make([]byte, n*ctrlSize)
	return true
}

// opError is how the socket's calls report errno e, as a net.Conn's do.
func (s *socket) opError(op, call string, e error) error {
	return &net.OpError{Op: op, Net: s.c.LocalAddr().Network(), Addr: s.c.LocalAddr(), Err: os.NewSyscallError(call, e)}
}

// receiver is one socket's receive function and what it reads with. Only
// WireGuard's receive routine for the socket calls it.
type receiver struct {
	s *socket
	mmsgs
	names []unix.RawSockaddrInet6

	// The RawConn's function (made once: a read allocates nothing) and
	// what it passes back.
	readFn func(fd uintptr) bool
	batch  []unix.Mmsghdr
	n      int
	err    error

	// The endpoint handed out last, and what it was made of: datagrams
	// from the same address to the same local one share it.
	last    *Endpoint
	lastKey epKey
}

// epKey is what makes an Endpoint.
type epKey struct {
	addr   netip.AddrPort
	src    [srcSize]byte
	srcLen uint8
}

func newReceiver(s *socket) *receiver {
	r := &receiver{s: s}
	r.readFn = func(fd uintptr) bool {
		r.n, r.err = sockio.Recvmmsg(fd, r.batch)
		return r.err != syscall.EAGAIN
	}
	return r
}

// grow makes room for n messages, each with its own iovec, name and
// control buffer.
func (r *receiver) grow(n int) {
	if !r.mmsgs.grow(n) {
		return
	}
	r.names = make([]unix.RawSockaddrInet6, n)
	for i := range r.hs {
		h := &r.hs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		h.Control = &r.ctrl[i*ctrlSize]
	}
}

// receive reads a batch into bufs. With UDP GRO, a read datagram may hold
// up to maxSegments of the sender's: it reads into the last
// len(bufs)/maxSegments buffers only (vpn.Staging makes those large) and
// splits what it read into the buffers from the first on, as StdNetBind
// does. A datagram longer than its buffer is cut short (WireGuard drops
// it as it does any that fails to authenticate).
func (r *receiver) receive(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	at := 0
	if r.s.gro {
		at = len(bufs) - (len(bufs)+maxSegments-1)/maxSegments
	}
	m := len(bufs) - at
	if m <= 0 {
		return 0, nil
	}
	r.grow(m)
	for i := range m {
		setIov(&r.iovs[i], bufs[at+i])
		h := &r.hs[i]
		h.Len, h.Hdr.Namelen, h.Hdr.Flags = 0, unix.SizeofSockaddrInet6, 0
		h.Hdr.SetControllen(ctrlSize) // the kernel set it to what it wrote
	}
	r.batch = r.hs[:m]
	if err := r.s.rc.Read(r.readFn); err != nil {
		return 0, err // closed: net.ErrClosed
	}
	r.batch = nil
	if r.err != nil {
		return 0, r.s.opError("read", "recvmmsg", r.err)
	}
	out := 0
	for i := range r.n {
		h := &r.hs[i]
		size := int(h.Len)
		ctrl := r.ctrl[i*ctrlSize:][:h.Hdr.Controllen]
		ep := r.endpoint(&r.names[i], h.Hdr.Namelen, ctrl)
		if ep == nil {
			continue // no address: nothing to answer
		}
		src := bufs[at+i][:size]
		seg := size
		if r.s.gro {
			if g := groSize(ctrl); g > 0 {
				seg = g
			}
		}
		for off := 0; off < size; off += seg {
			if out > at+i {
				break // more segments than buffers before it: dropped
			}
			// Within one buffer when out == at+i: copy moves, and
			// the segments after this one lie past what it wrote.
			sizes[out] = copy(bufs[out], src[off:min(off+seg, size)])
			eps[out] = ep
			out++
		}
	}
	return out, nil
}

// endpoint returns the Endpoint of a datagram from name that came with
// ctrl, nil if name is no IPv4 or IPv6 address.
func (r *receiver) endpoint(name *unix.RawSockaddrInet6, namelen uint32, ctrl []byte) *Endpoint {
	var k epKey
	switch name.Family {
	case unix.AF_INET:
		if namelen < unix.SizeofSockaddrInet4 {
			return nil
		}
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(name))
		k.addr = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port(sa.Port))
	case unix.AF_INET6:
		if namelen < unix.SizeofSockaddrInet6 {
			return nil
		}
		k.addr = netip.AddrPortFrom(netip.AddrFrom16(name.Addr), port(name.Port))
	default:
		return nil
	}
	k.srcLen = uint8(pktinfo(ctrl, k.src[:]))
	// Not one WireGuard cleared (ClearSrc, when a handshake goes
	// unanswered): the next datagram's endpoint says where it came to.
	if r.last != nil && k == r.lastKey && !r.last.cleared.Load() {
		return r.last
	}
	e := &Endpoint{AddrPort: k.addr, src: k.src, srcLen: k.srcLen}
	r.last, r.lastKey = e, k
	return e
}

// port reads a sockaddr's port, which is in network byte order.
func port(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// pktinfo copies the IP_PKTINFO or IPV6_PKTINFO message of ctrl into dst
// as a control message to send, and returns its length; 0 if there is
// none.
func pktinfo(ctrl, dst []byte) int {
	for len(ctrl) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(ctrl)
		if err != nil {
			return 0
		}
		if h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo ||
			h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo {
			n := unix.SizeofInet4Pktinfo
			if h.Level == unix.IPPROTO_IPV6 {
				n = unix.SizeofInet6Pktinfo
			}
			return putCmsg(dst, h.Level, h.Type, data[:n])
		}
		ctrl = rest
	}
	return 0
}

// groSize returns the segment size of a UDP_GRO message in ctrl, 0 if
// there is none.
func groSize(ctrl []byte) int {
	for len(ctrl) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(ctrl)
		if err != nil {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && len(data) >= 2 {
			return int(*(*uint16)(unsafe.Pointer(&data[0])))
		}
		ctrl = rest
	}
	return 0
}

// putCmsg writes a control message of level, typ and data at the start of
// dst and returns its length with padding; 0 if dst is too short.
func putCmsg(dst []byte, level, typ int32, data []byte) int {
	n := unix.CmsgSpace(len(data))
	if len(dst) < n {
		return 0
	}
	clear(dst[:n])
	h := (*unix.Cmsghdr)(unsafe.Pointer(&dst[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(dst[unix.CmsgLen(0):], data)
	return n
}

// SrcIP is the local address the endpoint's datagram came to; invalid if
// unknown.
func (e *Endpoint) SrcIP() netip.Addr {
	c := e.srcControl()
	if len(c) < unix.CmsgLen(0) {
		return netip.Addr{}
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
	data := c[unix.CmsgLen(0):]
	switch {
	case h.Level == unix.IPPROTO_IP && len(data) >= unix.SizeofInet4Pktinfo:
		return netip.AddrFrom4((*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0])).Spec_dst)
	case h.Level == unix.IPPROTO_IPV6 && len(data) >= unix.SizeofInet6Pktinfo:
		return netip.AddrFrom16((*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0])).Addr)
	}
	return netip.Addr{}
}

// sender is what one Send writes with, from Bind.sends.
type sender struct {
	mmsgs
	name4 unix.RawSockaddrInet4
	name6 unix.RawSockaddrInet6

	writeFn func(fd uintptr) bool
	batch   []unix.Mmsghdr
	n       int
	err     error
}

func (b *Bind) sender() *sender {
	if s, ok := b.sends.Get().(*sender); ok {
		return s
	}
	s := &sender{}
	s.writeFn = func(fd uintptr) bool {
		s.n, s.err = sockio.Sendmmsg(fd, s.batch)
		return s.err != syscall.EAGAIN
	}
	return s
}

// Send sends bufs to ep, an endpoint of this package's or a
// *conn.StdNetEndpoint, from the local address ep's datagram came to.
// An error of the device's for UDP GSO turns it off for the socket, and
// the batch goes again without: conn.ErrUDPGSODisabled wraps the second
// try's error.
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	ap, ok := AddrPort(ep)
	if !ok {
		return errors.New("udpbind: not a UDP endpoint")
	}
	var src []byte
	if e, ok := ep.(*Endpoint); ok {
		src = e.srcControl()
	}
	addr := ap.Addr().Unmap()
	b.mu.Lock()
	s, closed := b.v4, b.v4 == nil && b.v6 == nil
	if addr.Is6() {
		s = b.v6
	}
	b.mu.Unlock()
	if s == nil {
		if closed {
			return net.ErrClosed
		}
		return syscall.EAFNOSUPPORT
	}
	w := b.sender()
	defer b.sends.Put(w)
	gso := s.gso.Load()
	err := s.send(w, w.build(bufs, addr, ap.Port(), src, gso))
	if err != nil && gso && errors.Is(err, syscall.EIO) {
		// udp_send_skb's EIO: the device cannot checksum for GSO.
		s.gso.Store(false)
		return conn.ErrUDPGSODisabled{RetryErr: s.send(w, w.build(bufs, addr, ap.Port(), src, false))}
	}
	return err
}

// build lays bufs out as messages to addr:port, each with the control
// message src (nil: none). With gso, consecutive packets of one size (the
// last may be shorter) go as one datagram of up to maxSegments of them,
// each its own iovec.
func (w *sender) build(bufs [][]byte, addr netip.Addr, port uint16, src []byte, gso bool) []unix.Mmsghdr {
	w.grow(len(bufs))
	var name *byte
	var namelen uint32
	maxPayload := 1<<16 - 1 - 8 // IPv6's payload length excludes its header
	if addr.Is4() {
		w.name4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: addr.As4()}
		putPort(&w.name4.Port, port)
		name, namelen = (*byte)(unsafe.Pointer(&w.name4)), unix.SizeofSockaddrInet4
		maxPayload -= 20
	} else {
		w.name6 = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: addr.As16()}
		putPort(&w.name6.Port, port)
		name, namelen = (*byte)(unsafe.Pointer(&w.name6)), unix.SizeofSockaddrInet6
	}
	k := -1
	var seg, segs, total int
	var tail bool // the datagram's last segment is shorter: it ends there
	for i, p := range bufs {
		iov := &w.iovs[i]
		setIov(iov, p)
		if gso && k >= 0 && !tail && len(p) <= seg && segs < maxSegments && total+len(p) <= maxPayload {
			segs++
			total += len(p)
			tail = len(p) < seg
			w.hs[k].Hdr.SetIovlen(segs)
			continue
		}
		w.finish(k, src, seg, segs)
		k++
		w.hs[k] = unix.Mmsghdr{Hdr: unix.Msghdr{Name: name, Namelen: namelen, Iov: iov}}
		w.hs[k].Hdr.SetIovlen(1)
		seg, segs, total, tail = len(p), 1, len(p), false
	}
	w.finish(k, src, seg, segs)
	return w.hs[:k+1]
}

// finish gives message k its control messages: src, and UDP_SEGMENT when
// it holds more than one segment.
func (w *sender) finish(k int, src []byte, seg, segs int) {
	if k < 0 {
		return
	}
	c := w.ctrl[k*ctrlSize : (k+1)*ctrlSize]
	n := copy(c, src)
	if segs > 1 {
		var g [2]byte
		*(*uint16)(unsafe.Pointer(&g[0])) = uint16(seg)
		n += putCmsg(c[n:], unix.SOL_UDP, unix.UDP_SEGMENT, g[:])
	}
	if n > 0 {
		w.hs[k].Hdr.Control = &c[0]
		w.hs[k].Hdr.SetControllen(n)
	}
}

// setIov points iov at p.
func setIov(iov *unix.Iovec, p []byte) {
	iov.Base = nil
	if len(p) > 0 {
		iov.Base = &p[0]
	}
	iov.SetLen(len(p))
}

// putPort writes p into a sockaddr's port field in network byte order.
func putPort(dst *uint16, p uint16) {
	b := (*[2]byte)(unsafe.Pointer(dst))
	b[0], b[1] = byte(p>>8), byte(p)
}

// send writes msgs, all of them: sendmmsg may take fewer than it is
// given.
func (s *socket) send(w *sender, msgs []unix.Mmsghdr) error {
	for len(msgs) > 0 {
		w.batch = msgs
		if err := s.rc.Write(w.writeFn); err != nil {
			return err // closed: net.ErrClosed
		}
		w.batch = nil
		if w.err != nil {
			return s.opError("write", "sendmmsg", w.err)
		}
		if w.n <= 0 {
			return s.opError("write", "sendmmsg", syscall.EIO)
		}
		msgs = msgs[w.n:]
	}
	return nil
}
