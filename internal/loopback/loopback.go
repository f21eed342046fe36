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

// Ports hands out free loopback ports, never the same one twice from one
// Ports, nor one another process of the tests holds (claim). The kernel may
// still give a port to someone else between the probe and the bind; on a
// test machine that is unlikely. The zero value is ready.
type Ports struct {
	mu       sync.Mutex
	reserved map[int]bool
}

// Free returns a free TCP port on 127.0.0.1.
func (p *Ports) Free() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !p.reserved[port] && claim(port) {
			p.reserved[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("loopback: no free port found")
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
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
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
			if p.reserved[off+port] || !canListen(off+port) {
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
			p.reserved[off+port] = true
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

func (p *Ports) init() {
	if p.reserved == nil {
		p.reserved = map[int]bool{}
	}
}

func canListen(port int) bool {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
