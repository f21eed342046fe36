//go:build unix

package relay

import "syscall"

// fdLimit is the process's file descriptor limit (RLIMIT_NOFILE; Go raises
// the soft limit to the hard one at start), or 0 if unknown.
func fdLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}
