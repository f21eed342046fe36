package hubinfo

import "golang.org/x/sys/unix"

// machine is uname -m: what the kernel says the CPU is.
func machine() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Machine[:])
}
