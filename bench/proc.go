package bench

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a process the bench started. Its stdout and stderr go to a log
// file in the directory it was started in.
type Proc struct {
	Name    string
	Started time.Time
	cmd     *exec.Cmd
	log     string
	logFrom int64         // the log's size when this process started
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result, once done is closed
}

// StartProc runs argv in dir with the bench's environment plus env, its
// output going to dir/name.log (appended, so a restarted process keeps one
// log).
func StartProc(dir, name string, env []string, argv ...string) (*Proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	// No proxy may divert the agent: all traffic stays on loopback.
	cmd.Env = append(os.Environ(), "HTTPS_PROXY=", "https_proxy=", "HTTP_PROXY=", "http_proxy=")
	cmd.Env = append(cmd.Env, env...)
	p := &Proc{Name: name, Started: time.Now(), cmd: cmd, log: logPath, logFrom: fi.Size(), done: make(chan struct{})}
	if err := startTied(cmd, func(err error) {
		p.err = err
		close(p.done)
	}); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Alive reports whether the process is still running.
func (p *Proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Log returns what this process has written so far (a restarted process
// shares the log file but not what its predecessor wrote).
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.log)
	if int64(len(b)) < p.logFrom {
		return ""
	}
	return string(b[p.logFrom:])
}

// LogPath is the process's log file.
func (p *Proc) LogPath() string { return p.log }

// Stop ends the process with SIGTERM and waits up to 10 s, then kills it.
// Stopping a stopped process is a no-op.
func (p *Proc) Stop() {
	if !p.Alive() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
}

// Kill sends SIGKILL and waits until the process is gone.
func (p *Proc) Kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// Signal sends sig without waiting.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits up to timeout for the process to exit.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s still running after %v", p.Name, timeout)
	}
}

// WaitLog waits until the process's log contains s.
func (p *Proc) WaitLog(s string, timeout time.Duration) error {
	return WaitFor(timeout, fmt.Sprintf("%s to log %q", p.Name, s), func() (bool, error) {
		if !p.Alive() {
			return false, fmt.Errorf("%s exited (%v); its log:\n%s", p.Name, p.err, tail(p.Log(), 2000))
		}
		return strings.Contains(p.Log(), s), nil
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// Mem is a process's memory as /proc/PID/status tells it.
type Mem struct {
	RSS int64 // VmRSS, bytes resident now
	HWM int64 // VmHWM, the peak of VmRSS since the process started
}

// Mem reads the process's VmRSS and VmHWM.
func (p *Proc) Mem() (Mem, error) { return ReadMem(p.PID()) }

// ReadMem reads VmRSS and VmHWM of pid from /proc/PID/status.
func ReadMem(pid int) (Mem, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Mem{}, err
	}
	defer f.Close()
	var m Mem
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v) // "12345 kB"
		if len(f) != 2 || f[1] != "kB" {
			return Mem{}, fmt.Errorf("/proc/%d/status: %s: unexpected %q", pid, k, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return Mem{}, fmt.Errorf("/proc/%d/status: %s: %w", pid, k, err)
		}
		if k == "VmRSS" {
			m.RSS = n << 10
		} else {
			m.HWM = n << 10
		}
	}
	if m.RSS == 0 {
		return Mem{}, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return m, sc.Err()
}

// errTimeout is wrapped by WaitFor's timeout errors.
var errTimeout = errors.New("timed out")

// WaitFor polls cond every 20 ms until it reports true, fails, or timeout
// passes.
func WaitFor(timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %v waiting for %s", errTimeout, timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
