package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/device"

	"github.com/hubtunnel/hubtunnel/internal/sockio"
)

// AckIdle is how long a connection must have been without writes for the
// next write to call DelayACKs.
const AckIdle = time.Second

// DefaultWriteTimeout bounds one write when ConnConfig.WriteTimeout is zero.
const DefaultWriteTimeout = 30 * time.Second

var (
	// ErrShortBuffer is what ReadFrame returns for a frame longer than the
	// caller's buffer. The frame has been read and dropped; the connection
	// is fine. Buffers of MaxFrame bytes never see it.
	ErrShortBuffer = errors.New("wire: frame longer than the buffer")
	// ErrFinal is what a write returns after WriteFinal.
	ErrFinal = errors.New("wire: the last frame has been written")
)

// Conn is one framed connection as both ends use it: the agent's to its
// relay, and each agent's at the relay.
//
// Reading is for one goroutine: ReadFrame reads the next frame straight into
// the caller's buffer (the agent passes WireGuard's receive buffers, the
// relay its pooled frame buffers), so a message is copied once, from the
// read buffer to where it is used.
//
// Writing is safe for concurrent use. Write frames a batch of messages into
// one write under the Conn's lock (a writev where the Conn writes its
// socket itself, with large messages where they are: see vecMin), where it
// also
//   - leaves out keepalives that data does the job of, and holds one that
//     would go alone for up to KeepaliveHold (see keepaliveFilter);
//   - takes the socket out of quick-ACK mode on the first write after AckIdle
//     without writes (DelayACKs);
//   - bounds the write by ConnConfig.WriteTimeout: a peer that stops reading
//     for that long is treated as gone;
//   - counts bytes (ConnConfig.Counters).
//
// A failed write closes the connection, so its reader ends too. Close and
// CloseWithError close it from outside; Done and Err tell that it closed
// and why.
type Conn struct {
	c        net.Conn
	w        io.Writer      // c, or its sockio.Socket
	sock     *sockio.Socket // c's, nil where there is none
	counters *Counters

	// Reading: one goroutine.
	rd  *readBuf
	hdr [2]byte // here rather than on ReadFrame's stack, where it would escape

	park parkState // while a Parker waits for it (park.go)

	closeOnce sync.Once
	done      chan struct{} // closed first: the Parker and the writers see it
	closed    chan struct{} // closed once the socket is: Done
	err       error         // why it closed; written before done is closed

	mu           sync.Mutex    // guards the fields below
	ws           *writeScratch // kept between writes unless poolWrites
	poolWrites   bool          // ConnConfig.ReleaseIdle: ws comes from writePool for each write
	queued       []byte        // frames that go out in front of the next write
	lastWrite    time.Time
	ka           *keepaliveFilter
	final        bool // WriteFinal has written the last frame
	writeTimeout time.Duration
}

// ConnConfig configures a Conn. The zero value is ready to use.
type ConnConfig struct {
	// WriteTimeout bounds each write. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// ReadBuffer is the read buffer's size: large enough to pull several
	// frames out of one TCP segment per system call. Default 64 KiB; the
	// relay, which holds thousands of mostly idle connections, uses less.
	ReadBuffer int
	// ReleaseIdle: the read buffer is held only while it holds unread
	// bytes, and comes from a pool shared by every Conn of its size; a
	// reader waiting for the next frame holds none. Only where the Conn
	// reads the socket itself (a *net.TCPConn on Linux); over TLS or a
	// wrapper the buffer stays. For the relay's idle agent connections.
	ReleaseIdle bool
	// Counters, if set, counts the bytes of every frame read and written.
	// The agent shares one between its successive connections.
	Counters *Counters
}

// NewConn frames c.
func NewConn(c net.Conn, cfg ConnConfig) *Conn {
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.ReadBuffer <= 0 {
		cfg.ReadBuffer = 64 << 10
	}
	sock := sockio.Of(c)
	fc := &Conn{
		c:            c,
		w:            c,
		counters:     cfg.Counters,
		rd:           newReadBuf(c, sock, cfg.ReadBuffer, cfg.ReleaseIdle),
		done:         make(chan struct{}),
		closed:       make(chan struct{}),
		writeTimeout: cfg.WriteTimeout,
		poolWrites:   cfg.ReleaseIdle,
	}
	if sock != nil {
		fc.w, fc.sock = sock, sock
	}
	fc.ka = newKeepaliveFilter(fc.flushKeepalive)
	return fc
}

// ReadFrame reads the next frame's payload into p and returns its length.
// A frame longer than p is read and dropped with ErrShortBuffer. Any other
// error ends the stream: a clean end before a frame starts is io.EOF, one
// inside a frame io.ErrUnexpectedEOF, and a length of zero or over MaxFrame
// ErrEmptyFrame or ErrFrameTooLarge.
func (c *Conn) ReadFrame(p []byte) (int, error) {
	if _, err := c.rd.readFull(c.hdr[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(c.hdr[:]))
	if n == 0 {
		return 0, ErrEmptyFrame
	}
	if n > MaxFrame {
		return 0, fmt.Errorf("%w: %d bytes (max %d)", ErrFrameTooLarge, n, MaxFrame)
	}
	if n > len(p) {
		if err := c.rd.discard(n); err != nil {
			return 0, unexpected(err)
		}
		return 0, ErrShortBuffer
	}
	if _, err := c.rd.readFull(p[:n]); err != nil {
		return 0, unexpected(err)
	}
	c.counters.received(p[:n])
	return n, nil
}

// Next waits for the next frame and returns its length without reading
// it: a reader that holds many idle connections takes a buffer of the
// frame's size only once a frame is there, and ReadFrame reads it then.
// Its errors are ReadFrame's for the frame's length.
func (c *Conn) Next() (int, error) {
	hdr, err := c.rd.peek(2)
	if err != nil {
		if len(hdr) > 0 {
			err = unexpected(err)
		}
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(hdr))
	if n == 0 {
		return 0, ErrEmptyFrame
	}
	return n, nil
}

// ErrWouldBlock is what TryNext returns when no frame has begun to arrive.
var ErrWouldBlock = errors.New("wire: no frame to read now")

// CanWait reports whether WaitReadable and TryNext work: the Conn reads its
// socket itself (ConnConfig.ReleaseIdle on a TCP connection).
func (c *Conn) CanWait() bool { return c.rd.raw != nil }

// TryNext is Next for a reader that does its waiting in WaitReadable: when
// fewer than the 2 bytes of a frame's length are there and the socket has
// nothing more, it returns ErrWouldBlock instead of waiting. Only where
// CanWait.
func (c *Conn) TryNext() (int, error) {
	c.rd.nowait = true
	n, err := c.Next()
	c.rd.nowait = false
	return n, err
}

// WaitReadable waits, holding no buffer, until a read would not block:
// data, the end of the stream or an error; or until the read deadline
// passes (os.ErrDeadlineExceeded) or the Conn is closed. A goroutine that
// holds a connection while it is idle waits here, with a shallow stack,
// and reads the frames (TryNext, ReadFrame) on a goroutine whose stack has
// grown for them. Only where CanWait.
func (c *Conn) WaitReadable() error {
	if c.Buffered() {
		return nil
	}
	return c.rd.wait()
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Buffered reports whether a whole frame is already buffered, so a reader
// batching frames can stop before it would block.
func (c *Conn) Buffered() bool {
	if c.rd.buffered() < 2 {
		return false
	}
	hdr, _ := c.rd.peek(2)
	return c.rd.buffered() >= 2+int(binary.BigEndian.Uint16(hdr))
}

// Write sends msgs, each as a frame, in one write, behind whatever Queue
// holds; keepalives as the keepalive filter decides. A message that cannot
// be a frame (empty, over MaxFrame) fails the whole write before anything
// is written.
func (c *Conn) Write(msgs [][]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	send, _ := c.ka.filter(msgs, now)
	return c.writeLocked(send, now)
}

// Queue holds msg, framed, to go out in front of the next Write: the
// agent's Hello leaves in the same segment as its handshake initiation.
func (c *Conn) Queue(msg []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	q, err := AppendFrame(c.queued, msg)
	if err != nil {
		return err
	}
	c.queued = q
	c.counters.sent(msg)
	return nil
}

// WriteFinal writes msg as the last frame and half-closes the connection;
// later writes return ErrFinal. The peer reads the frame before the end of
// the stream and hangs up. (Closing at once instead would reset a connection
// with unread data in it, and a reset can take the frame with it.)
func (c *Conn) WriteFinal(msg []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.final {
		return ErrFinal
	}
	err := c.writeLocked([][]byte{msg}, time.Now())
	c.final = true
	if err != nil {
		return err // writeLocked has closed the connection
	}
	if cw, ok := c.c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// flushKeepalive writes a held keepalive whose time is up, if the
// connection is still open.
func (c *Conn) flushKeepalive() {
	select {
	case <-c.done:
		return
	default:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if p := c.ka.due(now); p != nil {
		c.writeLocked([][]byte{p}, now)
	}
}

func (c *Conn) writeLocked(msgs [][]byte, now time.Time) error {
	if c.final {
		return ErrFinal
	}
	ws := c.ws
	if c.poolWrites {
		ws = writePool.Get().(*writeScratch)
		defer writePool.Put(ws)
	} else if ws == nil {
		ws = new(writeScratch)
		c.ws = ws
	}
	defer ws.forget()
	buf := append(ws.buf[:0], c.queued...)
	c.queued = c.queued[:0]
	for _, p := range msgs {
		var err error
		if c.sock != nil && len(p) >= vecMin && len(p) <= MaxFrame {
			buf = binary.BigEndian.AppendUint16(buf, uint16(len(p)))
			ws.cuts = append(ws.cuts, cut{at: len(buf), msg: p})
		} else if buf, err = AppendFrame(buf, p); err != nil {
			return err
		}
		c.counters.sent(p)
	}
	ws.buf = buf
	if len(buf) == 0 {
		return nil
	}
	if now.Sub(c.lastWrite) >= AckIdle {
		DelayACKs(c.c)
	}
	c.lastWrite = now
	c.c.SetWriteDeadline(now.Add(c.writeTimeout))
	var err error
	if len(ws.cuts) == 0 {
		_, err = c.w.Write(buf)
	} else {
		_, err = c.sock.Writev(ws.vector())
	}
	if err != nil {
		c.CloseWithError(err)
		return err
	}
	return nil
}

// vecMin is the size from which a message is written from where it is
// (Socket.Writev) rather than copied into the write buffer: below it, the
// copy costs less than another iovec in the kernel. A frame's length
// always goes into the write buffer.
const vecMin = 1024

// writeScratch is what a write is put together in: the write buffer, and
// the messages that stay where they are (cuts) with the writev that takes
// both. A relay's idle agent connection holds none (writePool).
type writeScratch struct {
	buf  []byte
	cuts []cut
	vec  [][]byte
}

// cut is a message writeLocked leaves where it is: it goes out after the
// write buffer's first at bytes, before the rest.
type cut struct {
	at  int
	msg []byte
}

// vector is the write buffer with the cut messages in their places.
func (ws *writeScratch) vector() [][]byte {
	v := ws.vec[:0]
	from := 0
	for _, ct := range ws.cuts {
		v = append(v, ws.buf[from:ct.at], ct.msg)
		from = ct.at
	}
	if from < len(ws.buf) {
		v = append(v, ws.buf[from:])
	}
	ws.vec = v
	return v
}

// forget drops the write's messages, which are the caller's again once
// the write is over: scratch kept between writes does not keep them from
// the garbage collector.
func (ws *writeScratch) forget() {
	clear(ws.cuts)
	clear(ws.vec)
	ws.cuts, ws.vec = ws.cuts[:0], ws.vec[:0]
}

// writePool holds the write scratch of Conns with ConnConfig.ReleaseIdle:
// a relay's idle agent connection holds none between its writes (one that
// has sent a handshake response kept ~350 bytes).
var writePool = sync.Pool{New: func() any { return new(writeScratch) }}

// Close closes the connection; Err then reports net.ErrClosed unless it had
// closed for another reason first.
func (c *Conn) Close() error {
	c.CloseWithError(net.ErrClosed)
	return nil
}

// CloseWithError closes the connection and records err as why, unless it
// is closed already.
func (c *Conn) CloseWithError(err error) {
	c.closeOnce.Do(func() {
		c.err = err
		close(c.done)
		c.unpark() // before the socket's number is free for another
		c.c.Close()
		close(c.closed)
	})
}

// Done is closed when the connection has been closed, its socket
// included: until then a reader may still read it and a peer still gets
// answers. (The agent redialled on Done while the socket was still open,
// its reader answered the relay's Ping on the old connection, and the
// relay refused the new one as a copy of the hub.)
func (c *Conn) Done() <-chan struct{} { return c.closed }

// Err is why the connection closed: the first error given to
// CloseWithError, or the one that failed a write. Valid once Done is closed.
func (c *Conn) Err() error { return c.err }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.c.RemoteAddr() }

// SetReadDeadline bounds the reads to come, as net.Conn's does.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.c.SetReadDeadline(t) }

// Counters are byte counts on a framed connection. Data is WireGuard
// transport payload, i.e. the tunnelled IP packets; Overhead is everything
// else written or read: handshakes, keepalives, cookie replies, WireGuard
// headers and tags, frame headers and control frames. TCP/IP headers are not
// visible here.
type Counters struct {
	RxData, TxData         atomic.Uint64
	RxOverhead, TxOverhead atomic.Uint64
}

// Rx is every byte read, frame headers included.
func (c *Counters) Rx() uint64 { return c.RxData.Load() + c.RxOverhead.Load() }

// Tx is every byte written, frame headers included.
func (c *Counters) Tx() uint64 { return c.TxData.Load() + c.TxOverhead.Load() }

// received counts one frame read; a nil *Counters counts nothing.
func (c *Counters) received(payload []byte) {
	if c != nil {
		count(&c.RxData, &c.RxOverhead, payload)
	}
}

// sent counts one frame written.
func (c *Counters) sent(payload []byte) {
	if c != nil {
		count(&c.TxData, &c.TxOverhead, payload)
	}
}

func count(data, overhead *atomic.Uint64, payload []byte) {
	if Classify(payload) == Data {
		data.Add(uint64(len(payload) - device.MessageTransportSize))
		overhead.Add(device.MessageTransportSize + 2)
		return
	}
	overhead.Add(uint64(len(payload) + 2))
}
