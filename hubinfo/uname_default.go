//go:build !linux

package hubinfo

// machine is unknown where there is no uname(2) to ask; no hub runs there.
func machine() string { return "" }
