//go:build unix

package loopback

import (
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// Ports keeps one process from handing out a port twice; the processes of
// one `go test ./...` run side by side (a package each), and each probes
// for free ports on its own. Between one's probe and its bind, another
// could probe the same port and take it: the relay's port offsets overlap
// whenever two differ by the difference of two public ports (90 − 80),
// and four agent test binaries at once saw "address already in use" in 3
// of 100 runs. So each port handed out is also claimed in a file every
// process shares: a one-byte write lock at the port's offset (fcntl), which
// the kernel drops when the process ends, however it ends.
var claims struct {
	once sync.Once
	f    *os.File // nil when the file cannot be opened: no claims across processes
}

func claimFile() *os.File {
	claims.once.Do(func() {
		f, err := os.OpenFile(filepath.Join(os.TempDir(), "hubtunnel-loopback-ports.lock"), os.O_RDWR|os.O_CREATE, 0o666)
		if err == nil {
			claims.f = f // open for the process's life: closing any descriptor of the file would drop its locks
		}
	})
	return claims.f
}

// claim takes port for this process, or reports that another process
// holds it. Without the shared file every port can be claimed.
func claim(port int) bool {
	f := claimFile()
	if f == nil {
		return true
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: int64(port), Len: 1}
	return unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk) == nil
}

// unclaim gives port back (a claim that did not lead to a handout).
func unclaim(port int) {
	if f := claimFile(); f != nil {
		lk := unix.Flock_t{Type: unix.F_UNLCK, Whence: 0, Start: int64(port), Len: 1}
		unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk)
	}
}
