package bench

import (
	"os/exec"
	"runtime"
	"syscall"
)

// startTied starts cmd so that it gets SIGKILL if the bench dies first (no
// relay, agent, fleet or capture outlives an interrupted run), and calls
// exited with cmd.Wait's result once it has ended.
//
// The kernel sends that parent-death signal when the thread that started
// the child ends, not the process (golang/go#27505), and Go ends a thread
// whose goroutine locked it and returned, as e2e's inNetns does: a child
// started on a thread that such a goroutine later took died with it (it
// stopped dumpcap in the middle of e2e's TestStatsAgreeWithTheWire). So
// the child is started by a goroutine locked to its thread, which then
// waits for it: that thread lives as long as the child.
func startTied(cmd *exec.Cmd, exited func(error)) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited(cmd.Wait())
	}()
	return <-started
}
