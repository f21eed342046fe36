package wire

import (
	"encoding/binary"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/hubtunnel/hubtunnel/internal/sockio"
)

// parkerSys is a Parker's epoll instance: each parked socket is in it,
// one-shot, under its Park's token; an eventfd under token 0 stops the
// Parker's goroutine. The epoll instance is itself in Go's poller (an
// epoll fd is readable while it has events): the goroutine waits there
// like any reader, woken by the scheduler. (Blocked in epoll_wait(2) on a
// thread of its own, each wake-up went through a thread hand-off: a small
// request through the relay cost half as much CPU again.)
type parkerSys struct {
	ep      *os.File // the epoll instance
	evfd    int
	done    chan struct{} // closed when the goroutine has ended
	fd      int           // the epoll instance's descriptor (ep.Fd would make it blocking)
	stopped bool          // token 0 came: the goroutine ends; the goroutine's own
	evs     [128]unix.EpollEvent
}

func (s *parkerSys) start(p *Parker) error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("wire.NewParker: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return fmt.Errorf("wire.NewParker: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return fmt.Errorf("wire.NewParker: %w", err)
	}
	unix.SetNonblock(epfd, true) // so that os.NewFile hands it to Go's poller
	ep := os.NewFile(uintptr(epfd), "epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		unix.Close(evfd)
		return fmt.Errorf("wire.NewParker: %w", err)
	}
	s.ep, s.fd, s.evfd, s.done = ep, epfd, evfd, make(chan struct{})
	go s.loop(p, rc)
	return nil
}

// loop wakes the parked Conns whose sockets are ready, as epoll reports
// them, until the eventfd says stop.
func (s *parkerSys) loop(p *Parker, rc syscall.RawConn) {
	defer close(s.done)
	rc.Read(func(fd uintptr) bool {
		for {
			n, err := sockio.EpollWaitNow(int(fd), s.evs[:])
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return true // EBADF/EINVAL: only a bug; Close still wakes every Conn
			}
			if n == 0 {
				return false // wait in Go's poller for the next events
			}
			for _, ev := range s.evs[:n] {
				if tok := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32; tok != 0 {
					p.ready(tok)
				} else {
					s.stopped = true
				}
			}
			if s.stopped {
				return true
			}
		}
	})
}

func (s *parkerSys) stop() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(s.evfd, one[:])
	<-s.done
	s.ep.Close()
	unix.Close(s.evfd)
}

// parkSys is what a Conn keeps for epoll_ctl through its RawConn: the
// function Control runs, made once, and its arguments and result, so that
// a Park allocates nothing.
type parkSys struct {
	ctl  func(fd uintptr)
	epfd int
	op   int
	ev   unix.EpollEvent
	err  error
}

func (ps *parkSys) ctlOnce(fd uintptr) {
	ps.err = sockio.EpollCtl(ps.epfd, ps.op, int(fd), &ps.ev)
}

// epollCtl runs epoll_ctl for c's socket while it is open. Under p.mu.
func (s *parkerSys) epollCtl(c *Conn, op int, events uint32, token uint64) error {
	ps := &c.park.sys
	if ps.ctl == nil {
		ps.ctl = ps.ctlOnce
	}
	ps.epfd, ps.op = s.fd, op
	ps.ev = unix.EpollEvent{Events: events, Fd: int32(uint32(token)), Pad: int32(uint32(token >> 32))}
	ps.err = nil
	if err := c.rd.raw.Control(ps.ctl); err != nil {
		return err
	}
	return ps.err
}

// arm watches c's socket for one readable event under token. Under p.mu.
func (s *parkerSys) arm(c *Conn, token uint64) error {
	op := unix.EPOLL_CTL_MOD
	if !c.park.armed {
		op = unix.EPOLL_CTL_ADD
	}
	if err := s.epollCtl(c, op, unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLONESHOT, token); err != nil {
		return fmt.Errorf("wire.Park: %w", err)
	}
	c.park.armed = true
	return nil
}

// disarm takes c's socket out of the epoll set, while it is still open.
// Under p.mu.
func (s *parkerSys) disarm(c *Conn) {
	s.epollCtl(c, unix.EPOLL_CTL_DEL, 0, 0)
}
