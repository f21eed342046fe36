package vpn

import (
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

// MaxUDPMTU is the largest tunnel MTU over UDP: a Staging's slots hold one
// message of it.
const MaxUDPMTU = 8000

// UDPSlot is the size of a Staging slot for a tunnel of at most MaxUDPMTU.
const UDPSlot = MaxUDPMTU + device.MessageTransportSize

// groSlots is how many slots at the end of a batch the UDP bind reads
// coalesced (UDP GRO) datagrams into, up to 64 KiB each, before splitting
// them into the slots from the start: conn.IdealBatchSize divided by the
// most segments the kernel coalesces (64).
const groSlots = 2

// Staging sits between one of the UDP bind's receive functions (internal/udpbind)
// and WireGuard. The receive function needs a full batch of its own size
// (conn.IdealBatchSize, 128) to read into, and WireGuard keeps a 64 KiB
// buffer for every message of the batch size it is told, per receive
// routine, for the life of the device: 8 MiB each at 128. Staging reads
// into slots sized for one message (64 KiB only where GRO needs them) and
// hands the messages out in WireGuard's smaller batches over the next
// calls, one copy each, next to their decryption.
//
// Only one goroutine (WireGuard's receive routine for the function) may
// use a Staging.
type Staging struct {
	read  conn.ReceiveFunc
	bufs  [][]byte
	sizes []int
	eps   []conn.Endpoint
	next  int // bufs[next:n] have not been handed out yet
	n     int
}

// NewStaging returns a Staging that reads batch messages at a time through
// read into slots of slot bytes. A datagram longer than a slot is cut
// short, and WireGuard drops it as it does any message that fails to
// authenticate.
func NewStaging(read conn.ReceiveFunc, batch, slot int) *Staging {
	s := &Staging{read: read, bufs: make([][]byte, batch), sizes: make([]int, batch), eps: make([]conn.Endpoint, batch)}
	for i := range s.bufs {
		size := slot
		if i >= batch-groSlots {
			size = device.MaxMessageSize
		}
		s.bufs[i] = make([]byte, size)
	}
	return s
}

// Fill reads a new batch, waiting for it, once every message of the last
// one was handed out; otherwise it does nothing.
func (s *Staging) Fill() error {
	if s.next < s.n {
		return nil
	}
	n, err := s.read(s.bufs, s.sizes, s.eps)
	if err != nil {
		return err
	}
	s.next, s.n = 0, n
	return nil
}

// Peek returns the next message not handed out yet and its endpoint; ok is
// false when there is none. The message is valid until the next Fill.
func (s *Staging) Peek() (m []byte, ep conn.Endpoint, ok bool) {
	if s.next == s.n {
		return nil, nil, false
	}
	return s.bufs[s.next][:s.sizes[s.next]], s.eps[s.next], true
}

// Pop hands out the message Peek returned.
func (s *Staging) Pop() {
	s.eps[s.next] = nil
	s.next++
}

// Take copies the messages not handed out yet into packets, as many as
// fit, and returns how many it copied.
func (s *Staging) Take(packets [][]byte, sizes []int, eps []conn.Endpoint) int {
	want := min(len(packets), len(sizes), len(eps))
	k := 0
	for ; k < want; k++ {
		m, ep, ok := s.Peek()
		if !ok {
			break
		}
		sizes[k] = copy(packets[k], m)
		eps[k] = ep
		s.Pop()
	}
	return k
}
