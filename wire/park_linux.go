package wire

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// parkerSys is a Parker's epoll instance: each parked socket is in it,
// one-shot, under its Park's token; an eventfd under token 0 stops the
// goroutine that waits in epoll_wait(2).
type parkerSys struct {
	epfd, evfd int
	done       chan struct{} // closed when the goroutine has ended
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
	s.epfd, s.evfd, s.done = epfd, evfd, make(chan struct{})
	go s.loop(p)
	return nil
}

// loop waits for parked sockets, one thread blocked in epoll_wait for all
// of them, and wakes each that is ready.
func (s *parkerSys) loop(p *Parker) {
	defer close(s.done)
	var evs [128]unix.EpollEvent
	for {
		n, err := unix.EpollWait(s.epfd, evs[:], -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return // EBADF/EINVAL: only a bug; Close still wakes every Conn
		}
		stop := false
		for _, ev := range evs[:n] {
			if tok := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32; tok != 0 {
				p.ready(tok)
			} else {
				stop = true
			}
		}
		if stop {
			return
		}
	}
}

func (s *parkerSys) stop() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(s.evfd, one[:])
	<-s.done
	unix.Close(s.epfd)
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
	ps.err = unix.EpollCtl(ps.epfd, ps.op, int(fd), &ps.ev)
}

// epollCtl runs epoll_ctl for c's socket while it is open. Under p.mu.
func (s *parkerSys) epollCtl(c *Conn, op int, events uint32, token uint64) error {
	ps := &c.park.sys
	if ps.ctl == nil {
		ps.ctl = ps.ctlOnce
	}
	ps.epfd, ps.op = s.epfd, op
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
