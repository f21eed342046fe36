// Package loopback hands out free ports on 127.0.0.1 to the tests and the
// benchmarks, which start relays, agents and services side by side.
package loopback

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"

	"github.com/hubtunnel/hubtunnel/portmap"
)

// Ports hands out free loopback ports, never the same one twice in one
// process (whichever Ports it asks), nor one another process of the tests
// holds (claim), and outside the kernel's ephemeral range where there is
// room: a port in it that was free at the probe can be taken by any
// outgoing connection on the machine before the test binds it. The zero
// value is ready.
type Ports struct{}

// reserved are the ports this process has handed out, from any Ports: the
// relay's offsets put its public ports in the same band as Free's, so two
// Ports of one process (a test's and a testbed's) must not meet there.
// claim cannot tell them apart: a process may take its own lock again.
var reserved = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// Free returns a free TCP port on 127.0.0.1: drawn from 10000–65535
// outside the ephemeral range, or from the kernel (port 0) when that range
// leaves less than a thousand ports there.
func (p *Ports) Free() (int, error) {
	reserved.Lock()
	defer reserved.Unlock()
	draw := freeBand(ephemeralRange())
	for range 200 {
		port := 0
		if draw != nil {
			port = draw()
		} else {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, err
			}
			port = ln.Addr().(*net.TCPAddr).Port
			ln.Close()
		}
		if reserved.ports[port] || (draw != nil && !canListen(port)) || !claim(port) {
			continue
		}
		reserved.ports[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("loopback: no free port found")
}

// freeBand returns a function drawing a random port in 10000–65535 outside
// the ephemeral range lo–hi, or nil when fewer than 1000 such ports are
// left.
func freeBand(lo, hi int) func() int {
	const first, last = 10000, 65535
	lo, hi = max(lo, first), min(hi, last)
	below, above := 0, 0 // ports in first..lo-1 and hi+1..last
	if lo > hi {         // the range misses the band
		below = last - first + 1
	} else {
		below, above = lo-first, last-hi
	}
	if below+above < 1000 {
		return nil
	}
	return func() int {
		i := rand.IntN(below + above)
		if i < below {
			return first + i
		}
		return hi + 1 + i - below
	}
}

// FreeUDP returns a port free for both TCP and UDP on 127.0.0.1.
func (p *Ports) FreeUDP() (int, error) {
	for range 100 {
		port, err := p.Free()
		if err != nil {
			return 0, err
		}
		if c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("loopback: no free UDP port found")
}

// publicPorts are the relay's public ports before the offset: the whole
// fixed map, optional ports included, since the relay binds them all.
func publicPorts() []int {
	var ps []int
	for _, e := range portmap.Fixed() {
		ps = append(ps, int(e.Port))
	}
	return ps
}

// Offset returns a port_offset in 10000–21000 under which all of the
// relay's public ports are free. It draws only offsets that keep every
// public port out of the kernel's ephemeral range, where there are any: a
// port there that was free at the probe can be taken by any outgoing
// connection on the machine before the relay binds it (CI saw "address
// already in use" from exactly that).
func (p *Ports) Offset() (int, error) {
	reserved.Lock()
	defer reserved.Unlock()
	public := publicPorts()
	lo, hi := ephemeralRange()
	var offsets []int // offsets in 10000–21000 with no public port in the ephemeral range; all if none
	for off := 10000; off <= 21000; off++ {
		if !slices.ContainsFunc(public, func(port int) bool { return off+port >= lo && off+port <= hi }) {
			offsets = append(offsets, off)
		}
	}
	if len(offsets) == 0 {
		for off := 10000; off <= 21000; off++ {
			offsets = append(offsets, off)
		}
	}
next:
	for range 200 {
		off := offsets[rand.IntN(len(offsets))]
		for _, port := range public {
			if reserved.ports[off+port] || !canListen(off+port) {
				continue next
			}
		}
		for i, port := range public {
			if !claim(off + port) {
				for _, taken := range public[:i] {
					unclaim(off + taken)
				}
				continue next
			}
		}
		for _, port := range public {
			reserved.ports[off+port] = true
		}
		return off, nil
	}
	return 0, fmt.Errorf("loopback: no port_offset with all public ports free")
}

// ephemeralRange is the range the kernel picks local ports from for
// outgoing connections and port 0, Linux's default when it cannot be read.
func ephemeralRange() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if _, err := fmt.Sscan(string(b), &lo, &hi); err == nil && lo > 0 && lo <= hi {
			return lo, hi
		}
	}
	return 32768, 60999
}

func canListen(port int) bool {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
