//go:build race

package sockio

import (
	"runtime"
	"unsafe"
)

// The race detector does not see what a raw system call reads and writes;
// syscall.Read and Write tell it, and so does this package.

func raceRead(p []byte)  { runtime.RaceReadRange(unsafe.Pointer(&p[0]), len(p)) }
func raceWrite(p []byte) { runtime.RaceWriteRange(unsafe.Pointer(&p[0]), len(p)) }
