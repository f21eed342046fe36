//go:build !linux

package sockio

const supported = false

func Read(fd uintptr, p []byte) (int, error)  { panic("sockio: not supported") }
func Write(fd uintptr, p []byte) (int, error) { panic("sockio: not supported") }
func Readable(fd uintptr) bool                { panic("sockio: not supported") }

// Iovec is one buffer of a vectored call, on Linux.
type Iovec struct{}

func Readv(fd uintptr, bufs [][]byte, iov []Iovec) (int, error)  { panic("sockio: not supported") }
func Writev(fd uintptr, bufs [][]byte, iov []Iovec) (int, error) { panic("sockio: not supported") }
