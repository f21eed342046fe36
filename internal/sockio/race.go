//go:build linux && race

package sockio

import "syscall"

// Under the race detector the calls are the syscall package's: it tells
// the detector what each read and write touched, and orders every write
// before the reads that follow it (the detector's model of I/O as
// synchronisation, which tests across a socket rely on). What this package
// saves is the runtime's work, which the race detector does not look at.

func read(fd uintptr, p []byte) (int, error)  { return noNegative(syscall.Read(int(fd), p)) }
func write(fd uintptr, p []byte) (int, error) { return noNegative(syscall.Write(int(fd), p)) }

// noNegative turns syscall's -1 on an error into 0, as the raw calls give.
func noNegative(n int, err error) (int, error) {
	if n < 0 {
		n = 0
	}
	return n, err
}
