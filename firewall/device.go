package firewall

import (
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/hubtunnel/hubtunnel/internal/logger"
)

// logInterval is the least time between two drop summaries in the log.
const logInterval = 30 * time.Second

// Stats counts the firewall's verdicts since Wrap.
type Stats struct {
	Passed        uint64
	DropSource    uint64 // source not in Policy.Allowed
	DropPort      uint64 // TCP or UDP to an unmapped port
	DropProto     uint64 // other protocols, fragments, unwalkable IPv6 headers
	DropMalformed uint64 // truncated or inconsistent headers
}

// Dropped is the number of packets dropped for any reason.
func (s Stats) Dropped() uint64 {
	return s.DropSource + s.DropPort + s.DropProto + s.DropMalformed
}

func (s Stats) sub(o Stats) Stats {
	return Stats{
		Passed:        s.Passed - o.Passed,
		DropSource:    s.DropSource - o.DropSource,
		DropPort:      s.DropPort - o.DropPort,
		DropProto:     s.DropProto - o.DropProto,
		DropMalformed: s.DropMalformed - o.DropMalformed,
	}
}

// Device is a tun.Device that filters the packets written to it (inbound
// from the tunnel, on their way to the stack) by a Policy and passes
// everything else, reads included, through to the device it wraps. Make
// one with Wrap.
//
// Dropping malformed packets here also protects the batch: wireguard-go's
// netstack device fails a whole Write on one packet of unknown IP version.
//
// Inbound flow (Write, called by wireguard-go, concurrently, one goroutine
// per peer):
//  1. load the current compiled policy (one atomic load per batch);
//  2. classify each packet (Check's rules, zero allocations);
//  3. move the packets that pass to the front of the batch, in order;
//  4. add the batch's verdicts to the counters, and log a summary of drops
//     if the last one is more than logInterval old;
//  5. hand the passing packets to the inner device in one Write.
type Device struct {
	inner  tun.Device
	logf   logger.Logf
	now    func() time.Time // time.Now; replaced by tests
	policy atomic.Pointer[compiled]
	counts [numVerdicts]atomic.Uint64 // indexed by Verdict

	// nextLog is the earliest time, in Unix nanoseconds, at which the next
	// drop summary may be logged. The Write that moves it on logs.
	nextLog atomic.Int64

	logMu     sync.Mutex
	loggedAt  time.Time // when the last summary was logged (or Wrap)
	loggedSum Stats     // the counters at that time
}

var _ tun.Device = (*Device)(nil)

// Wrap returns dev behind a firewall enforcing p. Dropped packets are
// summarized through logf, prefixed "firewall: ", at most once per 30 s with
// their count since the previous summary; logf may be nil.
func Wrap(dev tun.Device, p Policy, logf logger.Logf) *Device {
	logf = logger.OrDiscard(logf)
	d := &Device{inner: dev, logf: logf, now: time.Now}
	d.loggedAt = d.now()
	d.policy.Store(compile(p))
	return d
}

// SetPolicy replaces the policy. It is safe to call while packets flow: each
// batch written is filtered entirely by either the old or the new policy.
// Later changes to p's slices do not affect the firewall.
func (d *Device) SetPolicy(p Policy) {
	d.policy.Store(compile(p))
}

// Policy returns a copy of the policy in force.
func (d *Device) Policy() Policy {
	p := d.policy.Load().policy
	p.Allowed = slices.Clone(p.Allowed)
	p.TCPPorts = slices.Clone(p.TCPPorts)
	return p
}

// Stats returns the verdict counters. Each counter is read atomically; the
// set is not a snapshot of one instant while packets flow.
func (d *Device) Stats() Stats {
	return Stats{
		Passed:        d.counts[Pass].Load(),
		DropSource:    d.counts[DropSource].Load(),
		DropPort:      d.counts[DropPort].Load(),
		DropProto:     d.counts[DropProto].Load(),
		DropMalformed: d.counts[DropMalformed].Load(),
	}
}

// Write filters bufs (packet i is bufs[i][offset:]) and writes the packets
// that pass to the inner device in one call, in their original order. It
// does not call the inner device when nothing passes.
//
// Write reorders the entries of bufs in place: the passing packets are moved
// to the front and the batch handed on is bufs[:n]. This is safe with
// wireguard-go, which rebuilds the slice for every call (append to bufs[:0]
// in RoutineSequentialReceiver) and recycles its buffers through its own
// elements, never through bufs. Entries are swapped, not overwritten, so bufs
// stays a permutation of what the caller passed: no buffer is lost or
// duplicated even for a caller that recycles buffers through the slice.
//
// Write returns len(bufs) when the inner write succeeds or is not needed:
// dropped packets are consumed, not failed. If the inner write fails, Write
// returns 0 and its error. Packets are counted as passed when the firewall
// lets them through, whether or not the inner write then succeeds.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	pol := d.policy.Load()
	var counts [numVerdicts]uint32
	n := 0
	for i, b := range bufs {
		v := DropMalformed
		if offset >= 0 && offset <= len(b) {
			v = pol.check(b[offset:])
		}
		counts[v]++
		if v == Pass {
			bufs[n], bufs[i] = bufs[i], bufs[n]
			n++
		}
	}
	for v, c := range counts {
		if c != 0 {
			d.counts[v].Add(uint64(c))
		}
	}
	if n < len(bufs) {
		d.dropped()
	}
	if n == 0 {
		return len(bufs), nil
	}
	if _, err := d.inner.Write(bufs[:n], offset); err != nil {
		return 0, err
	}
	return len(bufs), nil
}

// dropped logs a summary of the drops since the last one if that was at
// least logInterval ago. It is called after the counters were updated, once
// per batch with drops; only one caller per interval gets to log.
func (d *Device) dropped() {
	now := d.now()
	next := d.nextLog.Load()
	if now.UnixNano() < next {
		return
	}
	if !d.nextLog.CompareAndSwap(next, now.Add(logInterval).UnixNano()) {
		return // another Write logs this one
	}

	d.logMu.Lock()
	cur := d.Stats()
	diff, since := cur.sub(d.loggedSum), now.Sub(d.loggedAt)
	d.loggedSum, d.loggedAt = cur, now
	d.logMu.Unlock()

	if diff.Dropped() == 0 {
		return // a concurrent summary already covered these
	}
	d.logf("firewall: dropped %d packets in the last %v (source not allowed %d, port not mapped %d, protocol %d, malformed %d)",
		diff.Dropped(), since.Round(time.Second), diff.DropSource, diff.DropPort, diff.DropProto, diff.DropMalformed)
}

// The rest of tun.Device passes through.

func (d *Device) File() *os.File { return d.inner.File() }

func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return d.inner.Read(bufs, sizes, offset)
}

func (d *Device) MTU() (int, error)        { return d.inner.MTU() }
func (d *Device) Name() (string, error)    { return d.inner.Name() }
func (d *Device) Events() <-chan tun.Event { return d.inner.Events() }
func (d *Device) Close() error             { return d.inner.Close() }
func (d *Device) BatchSize() int           { return d.inner.BatchSize() }
