package wire

import (
	"errors"
	"sync"
	"sync/atomic"
)

// ErrParkerClosed is what Park returns once its Parker is closed.
var ErrParkerClosed = errors.New("wire: parker closed")

// Parker waits for many idle Conns at once, on one goroutine of its own
// (epoll on Linux, park_linux.go), so that an idle connection needs no
// goroutine: a relay's idle agent connection holds neither a read buffer
// (ConnConfig.ReleaseIdle) nor a goroutine's stack (~4 KB each: 10,000 idle
// hubs held 43 MB of stacks waiting in WaitReadable).
//
// Park hands it a Conn and a wake function; wake runs once, when the Conn
// has something to read (data, the end of the stream, an error), or is
// closed (Close, CloseWithError, a failed write), or the Parker closes. It
// runs on the Parker's goroutine or the closer's and must not block: it
// starts the reader elsewhere, which reads what is there (TryNext,
// ReadFrame) and parks the Conn again. A parked Conn has no read deadline:
// nothing reads it until it is readable.
//
// A Conn's socket must be closed through the Conn while it is parked (or
// the Parker closed afterwards): a socket closed behind the Conn's back
// leaves epoll without telling it, and its wake would never run.
type Parker struct {
	mu     sync.Mutex // guards the fields below and every Conn's park
	parked map[uint64]*Conn
	next   uint64 // token of the next Park; 0 is the Parker's own wake-up
	closed bool

	sys parkerSys // the platform's part (park_linux.go)
}

// parkState is a Conn's side of parking; all but p under p's mu.
type parkState struct {
	p     atomic.Pointer[Parker] // set by the first Park
	token uint64                 // in parked while parked; 0 when not
	wake  func()
	armed bool    // the socket is registered with p (armed or spent)
	sys   parkSys // the platform's per-Conn part (park_linux.go)
}

// NewParker starts a Parker; where the platform has none (not Linux) it
// returns an error and callers keep a goroutine per connection.
func NewParker() (*Parker, error) {
	p := &Parker{parked: map[uint64]*Conn{}, next: 1}
	if err := p.sys.start(p); err != nil {
		return nil, err
	}
	return p, nil
}

// Park calls wake once c has something to read or is closed (see Parker).
// When it returns an error (the Parker is closed; the socket cannot be
// watched) wake does not run, and the caller still owns the reading.
// Only where c.CanWait.
func (p *Parker) Park(c *Conn, wake func()) error {
	if c.Buffered() {
		wake() // a whole frame read and not handed out: the socket may stay quiet
		return nil
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrParkerClosed
	}
	select {
	case <-c.done:
		p.mu.Unlock()
		wake()
		return nil
	default:
	}
	if !c.park.p.CompareAndSwap(nil, p) && c.park.p.Load() != p {
		p.mu.Unlock()
		return errors.New("wire: Conn parked with another Parker")
	}
	token := p.next
	p.next++
	if err := p.sys.arm(c, token); err != nil {
		p.mu.Unlock()
		return err
	}
	c.park.token, c.park.wake = token, wake
	p.parked[token] = c
	p.mu.Unlock()
	return nil
}

// Parked is how many Conns wait now.
func (p *Parker) Parked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked)
}

// ready takes the Conn parked under token, if it still is, and wakes it.
func (p *Parker) ready(token uint64) {
	p.mu.Lock()
	c := p.parked[token]
	var wake func()
	if c != nil {
		wake = c.takeWakeLocked()
	}
	p.mu.Unlock()
	if wake != nil {
		wake()
	}
}

// unpark is a closing Conn's: it leaves the Parker (before its socket is
// closed, so that no later socket with its number is touched) and is woken
// if it was parked.
func (c *Conn) unpark() {
	p := c.park.p.Load()
	if p == nil {
		return // never parked; a Park from now on sees c.done closed
	}
	p.mu.Lock()
	wake := c.takeWakeLocked()
	if c.park.armed && !p.closed {
		p.sys.disarm(c)
		c.park.armed = false
	}
	p.mu.Unlock()
	if wake != nil {
		wake()
	}
}

// takeWakeLocked takes c out of its Parker's waiting set and returns its
// wake function, or nil if it was not waiting. Under p.mu.
func (c *Conn) takeWakeLocked() func() {
	if c.park.token == 0 {
		return nil
	}
	delete(c.park.p.Load().parked, c.park.token)
	wake := c.park.wake
	c.park.token, c.park.wake = 0, nil
	return wake
}

// Close stops the Parker and wakes every Conn parked with it; later Parks
// fail. Idempotent.
func (p *Parker) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var wakes []func()
	for _, c := range p.parked {
		if w := c.takeWakeLocked(); w != nil {
			wakes = append(wakes, w)
		}
	}
	p.mu.Unlock()
	p.sys.stop()
	for _, w := range wakes {
		w()
	}
	return nil
}
