//go:build linux && !race

package sockio

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

func read(fd uintptr, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func write(fd uintptr, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func readv(fd uintptr, bufs [][]byte, iov []unix.Iovec) (int, error) {
	return iovecCall(unix.SYS_READV, fd, bufs, iov)
}

func writev(fd uintptr, bufs [][]byte, iov []unix.Iovec) (int, error) {
	return iovecCall(unix.SYS_WRITEV, fd, bufs, iov)
}

func iovecCall(trap, fd uintptr, bufs [][]byte, iov []unix.Iovec) (int, error) {
	iov = iov[:0]
	for _, b := range bufs {
		if len(b) > 0 {
			v := unix.Iovec{Base: &b[0]}
			v.SetLen(len(b))
			iov = append(iov, v)
		}
	}
	if len(iov) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	clear(iov) // kept by the caller for the next call: it must not keep the buffers alive
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
