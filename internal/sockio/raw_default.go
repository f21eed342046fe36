//go:build !linux

package sockio

const supported = false

func Read(fd uintptr, p []byte) (int, error)  { panic("sockio: not supported") }
func Write(fd uintptr, p []byte) (int, error) { panic("sockio: not supported") }
func Readable(fd uintptr) bool                { panic("sockio: not supported") }
