//go:build !unix

package loopback

// Without fcntl locks, ports are not claimed across processes.
func claim(int) bool { return true }
func unclaim(int)    {}
