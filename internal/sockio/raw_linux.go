package sockio

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const supported = true

// Iovec is one buffer of a vectored call (Readv, Writev).
type Iovec = unix.Iovec

// Read is read(2) on fd, retried on EINTR, without telling the runtime
// (see race.go for race builds). fd must be non-blocking.
func Read(fd uintptr, p []byte) (int, error) { return retried(read, fd, p) }

// Write is write(2) on fd, retried on EINTR, without telling the runtime
// (see race.go for race builds). fd must be non-blocking.
func Write(fd uintptr, p []byte) (int, error) { return retried(write, fd, p) }

func retried(call func(uintptr, []byte) (int, error), fd uintptr, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := call(fd, p)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// Readv is readv(2) on fd into bufs, in order, retried on EINTR, without
// telling the runtime. iov is room for the call's iovecs (len(bufs) of
// them; at most 1,024), so that a call allocates nothing. Empty buffers
// are left out. Race builds read into the first non-empty buffer only
// (race.go): a short read, which a caller handles anyway. fd must be
// non-blocking.
func Readv(fd uintptr, bufs [][]byte, iov []Iovec) (int, error) {
	return vectored(readv, fd, bufs, iov)
}

// Writev is writev(2) on fd from bufs, in order, as Readv is readv(2); race
// builds write the first non-empty buffer only, a short write.
func Writev(fd uintptr, bufs [][]byte, iov []Iovec) (int, error) {
	return vectored(writev, fd, bufs, iov)
}

func vectored(call func(uintptr, [][]byte, []unix.Iovec) (int, error), fd uintptr, bufs [][]byte, iov []unix.Iovec) (int, error) {
	for {
		n, err := call(fd, bufs, iov)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// Readable reports whether a read on fd would not block: data, EOF or an
// error waiting (poll(2) with no timeout, which unlike a peek leaves a
// pending error such as a reset for the read that follows).
func Readable(fd uintptr) bool {
	p := unix.PollFd{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}
	var ts unix.Timespec // no waiting
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&p)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		if e == 0 {
			return n > 0
		}
		if e != syscall.EINTR {
			return true // let the read that follows report it
		}
	}
}

// EpollWaitNow is epoll_wait(2) on epfd with no timeout (it never blocks),
// retried on EINTR, without telling the runtime.
func EpollWaitNow(epfd int, evs []unix.EpollEvent) (int, error) {
	if len(evs) == 0 {
		return 0, syscall.EINVAL
	}
	for {
		// epoll_pwait with no signal mask: the one every architecture has.
		n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
		if e == 0 {
			return int(n), nil
		}
		if e != syscall.EINTR {
			return 0, e
		}
	}
}

// EpollCtl is epoll_ctl(2) without telling the runtime (it never blocks).
func EpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// Recvmmsg is recvmmsg(2) on fd with no flags and no timeout, retried on
// EINTR, without telling the runtime. fd must be non-blocking: with
// nothing to read it returns EAGAIN.
func Recvmmsg(fd uintptr, hs []unix.Mmsghdr) (int, error) {
	return mmsg(unix.SYS_RECVMMSG, fd, hs)
}

// Sendmmsg is sendmmsg(2) on fd with no flags, retried on EINTR, without
// telling the runtime. fd must be non-blocking: with no room to write it
// returns EAGAIN.
func Sendmmsg(fd uintptr, hs []unix.Mmsghdr) (int, error) {
	return mmsg(unix.SYS_SENDMMSG, fd, hs)
}

func mmsg(trap, fd uintptr, hs []unix.Mmsghdr) (int, error) {
	if len(hs) == 0 {
		return 0, nil
	}
	for {
		n, _, e := unix.RawSyscall6(trap, fd, uintptr(unsafe.Pointer(&hs[0])), uintptr(len(hs)), 0, 0, 0)
		if e == 0 {
			return int(n), nil
		}
		if e != syscall.EINTR {
			return 0, e
		}
	}
}
