package bench

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the child get SIGKILL if the bench dies first, so no
// relay, agent or fleet outlives an interrupted run.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
