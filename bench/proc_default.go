//go:build !linux

package bench

import "os/exec"

// startTied starts cmd and calls exited with cmd.Wait's result once it has
// ended. Where the kernel offers no parent-death signal, a child may
// outlive an interrupted bench.
func startTied(cmd *exec.Cmd, exited func(error)) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { exited(cmd.Wait()) }()
	return nil
}
