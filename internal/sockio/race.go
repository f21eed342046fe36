//go:build linux && race

package sockio

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// Under the race detector the calls are the syscall package's: it tells
// the detector what each read and write touched, and orders every write
// before the reads that follow it (the detector's model of I/O as
// synchronisation, which tests across a socket rely on). What this package
// saves is the runtime's work, which the race detector does not look at.

func read(fd uintptr, p []byte) (int, error)  { return noNegative(syscall.Read(int(fd), p)) }
func write(fd uintptr, p []byte) (int, error) { return noNegative(syscall.Write(int(fd), p)) }

// Readv and Writev move the first non-empty buffer only, with the calls
// above (x/sys's readv and writev tell the detector of an ordering of
// their own, not the syscall package's).
func readv(fd uintptr, bufs [][]byte, _ []unix.Iovec) (int, error) {
	return firstOf(read, fd, bufs)
}

func writev(fd uintptr, bufs [][]byte, _ []unix.Iovec) (int, error) {
	return firstOf(write, fd, bufs)
}

func firstOf(call func(uintptr, []byte) (int, error), fd uintptr, bufs [][]byte) (int, error) {
	for _, b := range bufs {
		if len(b) > 0 {
			return call(fd, b)
		}
	}
	return 0, nil
}

// noNegative turns syscall's -1 on an error into 0, as the raw calls give.
func noNegative(n int, err error) (int, error) {
	if n < 0 {
		n = 0
	}
	return n, err
}
