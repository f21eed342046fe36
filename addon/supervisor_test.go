package addon_test

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// state reads supervisor.state as the fallback page and the agent do.
func (h *hub) state() map[string]string {
	m := map[string]string{}
	b, _ := os.ReadFile(h.path(statePath))
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// crash kills the agent with KILL, as the kernel's OOM killer or a fault
// would, and waits until it is gone.
func (h *hub) crash(pid int) {
	h.t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		h.t.Fatal(err)
	}
	poll.Until(h.t, 10*time.Second, "the killed agent gone", func() bool { return !running(pid) })
}

// TestCrashedAgentComesBack: an agent killed with KILL is started again by
// the supervisor within the first backoff, and the state file says so.
func TestCrashedAgentComesBack(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	h.mustInstall()
	h.setUp()
	h.mustRC("restart")
	pid := h.waitOneAgent()
	if len(h.supervisors()) != 1 {
		t.Fatalf("supervisors: %v, want one", h.supervisors())
	}

	h.crash(pid)
	var again int
	poll.Until(t, 10*time.Second, "a new agent after the crash", func() bool {
		a := h.agents()
		if len(a) != 1 || a[0] == pid {
			return false
		}
		again = a[0]
		b, _ := os.ReadFile(h.path(pidPath))
		return strings.TrimSpace(string(b)) == strconv.Itoa(again)
	})
	st := h.state()
	if st["restarts"] != "1" || st["last_exit"] != "SIGKILL" || st["given_up"] != "0" {
		t.Errorf("supervisor.state after one crash: %v", st)
	}
	if n, err := strconv.ParseInt(st["last_crash"], 10, 64); err != nil || time.Since(time.Unix(n, 0)) > time.Minute {
		t.Errorf("last_crash = %q, want about now", st["last_crash"])
	}

	// A clean stop is no crash: supervisor and agent end, nothing comes back.
	h.mustRC("stop")
	if a, s := h.agents(), h.supervisors(); len(a)+len(s) != 0 {
		t.Errorf("after stop: agents %v, supervisors %v", a, s)
	}
	if exists(h.path(pidPath)) || exists(h.path(supPidPath)) {
		t.Error("a pid file is left after stop")
	}
}

// TestSupervisorGivesUp: five crashes within ten minutes end the
// supervision, visibly in supervisor.state; a start begins afresh.
func TestSupervisorGivesUp(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	h.mustInstall()
	h.setUp()
	// Backoff capped at 1 s so that the test does not wait 1+2+4+8 s.
	h.mustRC("restart", "HUBTUNNEL_BACKOFF_MAX=1")
	pid := h.waitOneAgent()
	for i := 1; i <= 5; i++ {
		h.crash(pid)
		if i == 5 {
			break
		}
		// The agent the supervisor started, as its pid file names it, not
		// any process with the agent's command line (the stand-in forks a
		// sleep every second, which carries that line until it execs).
		prev := pid
		pid = h.waitOneAgent()
		if pid == prev {
			t.Fatalf("crash %d: the agent %d still runs", i, pid)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(h.path("standin.log"))
			t.Logf("state %v, agents %v, supervisors %v, agents started:\n%s", h.state(), h.agents(), h.supervisors(), b)
		}
	})
	poll.Until(t, 10*time.Second, "the supervisor giving up", func() bool {
		return h.state()["given_up"] == "1" && len(h.supervisors()) == 0
	})
	if st := h.state(); st["restarts"] != "4" || st["last_exit"] != "SIGKILL" {
		t.Errorf("supervisor.state after giving up: %v", st)
	}
	if a := h.agents(); len(a) != 0 {
		t.Errorf("an agent runs after the supervisor gave up: %v", a)
	}
	if exists(h.path(supPidPath)) {
		t.Error("the supervisor's pid file is left after it gave up")
	}

	// The owner starts it again (the fallback page's button runs start).
	h.mustRC("start")
	h.waitOneAgent()
	if st := h.state(); st["given_up"] == "1" {
		t.Errorf("supervisor.state still says given up after a start: %v", st)
	}
}

// TestAgentExitZeroIsNoCrash: an agent that ends by itself with 0 (as it
// does on TERM from anyone) is not started again.
func TestAgentExitZeroIsNoCrash(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	h.mustInstall()
	h.setUp()
	h.mustRC("restart")
	pid := h.waitOneAgent()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "agent and supervisor ended", func() bool {
		return len(h.agents()) == 0 && len(h.supervisors()) == 0
	})
	if st := h.state(); st["restarts"] != "" && st["restarts"] != "0" {
		t.Errorf("an exit 0 counted as a crash: %v", st)
	}
}

// TestStaleSupervisorPidFile: a supervisor pid file naming an unrelated
// process is neither signalled by stop nor taken for a running supervisor.
func TestStaleSupervisorPidFile(t *testing.T) {
	t.Parallel()
	h := newHub(t)
	h.mustInstall()
	h.setUp()
	h.mustRC("stop")
	other := startSleeper(t)
	writeFile(t, h.path(supPidPath), strconv.Itoa(other)+"\n", 0o644)
	h.mustRC("stop")
	if !running(other) {
		t.Fatal("stop ended a process that is not the supervisor")
	}
	writeFile(t, h.path(supPidPath), strconv.Itoa(other)+"\n", 0o644)
	h.mustRC("start")
	h.waitOneAgent()
	if !running(other) {
		t.Fatal("start ended a process that is not the supervisor")
	}
}

// startSleeper starts an unrelated process (busybox sleep) and returns its pid.
func startSleeper(t *testing.T) int {
	t.Helper()
	busybox, _ := busyboxPath(t)
	other := exec.Command(busybox, "sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	return other.Process.Pid
}
