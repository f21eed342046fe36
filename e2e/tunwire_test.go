package e2e

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A wire for kernels without netem. Where tc cannot add a netem qdisc
// (CONFIG_NET_SCH_NETEM is not built, as on the machines CI runs on), the
// delay and reorder faults join the two namespaces through a pair of TUN
// devices instead of a veth: one in each namespace, both read and written
// by this test process, which forwards every IP packet one end sends to the
// other end. Both kernels' stacks, the agent's and the relay's sockets, are
// the real ones; only the wire between them is a program, and it does what
// netem does:
//
//   - delay d: each packet leaves d after it was sent, in order;
//   - reorder p with delay d: a share p of the packets leaves at once, the
//     others after d, so those sent at once overtake the delayed ones
//     (netem's "delay d reorder p", without its correlation);
//   - loss p: a share p of the packets is dropped (1: a blackhole);
//   - rate r: packets leave one after another at r bytes per second, each
//     after its serialization time, as through a slow uplink's modem; they
//     wait in the queue meanwhile (netem's "rate", then its delay; with a
//     rate, none is sent ahead);
//   - as netem's default limit, at most 1000 packets wait per direction;
//     one more is dropped.
//
// Each direction has its impairment: set changes both, setFrom one.

// impairment is what the wire does to the packets it forwards; the zero
// value forwards them as they come.
type impairment struct {
	delay   time.Duration
	reorder float64 // share of packets sent at once while the others wait delay
	loss    float64 // share of packets dropped
	rate    int64   // bytes per second the packets leave at (0: as fast as they come)
	// burst: from every burstEvery-th packet on, every packet is lost for
	// this long but the first one sent after half of it, as a full queue
	// on the path drops a flight.
	burst      time.Duration
	burstEvery int
}

func (i impairment) String() string {
	var parts []string
	if i.loss > 0 {
		parts = append(parts, fmt.Sprintf("loss %g %%", i.loss*100))
	}
	if i.rate > 0 {
		parts = append(parts, fmt.Sprintf("%g Mbit/s", float64(i.rate)*8/1e6))
	}
	if i.delay > 0 {
		parts = append(parts, fmt.Sprintf("delay %v", i.delay))
	}
	if i.reorder > 0 {
		parts = append(parts, fmt.Sprintf("%g %% sent at once", i.reorder*100))
	}
	if i.burst > 0 {
		parts = append(parts, fmt.Sprintf("all but one lost for %v every %d packets", i.burst, i.burstEvery))
	}
	if len(parts) == 0 {
		return "clean"
	}
	return strings.Join(parts, ", ")
}

const wireQueueLimit = 1000 // packets waiting per direction (netem's default limit)

// tunWire forwards packets between two TUN devices.
type tunWire struct {
	ends  [2]*os.File
	imp   [2]atomic.Pointer[impairment] // for the packets read from ends[i]
	done  chan struct{}
	wg    sync.WaitGroup
	stats struct{ forwarded, delayed, early, lost, dropped atomic.Int64 }
	bytes [2]atomic.Int64 // forwarded from ends[i]
	wait  [2]atomic.Int64 // the longest a packet from ends[i] waited in the queue (ns)
}

type wirePacket struct {
	due time.Time
	b   []byte
}

// needTun says why TUN devices cannot be made here, or nil.
func needTun() error {
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("no TUN devices here (the wire that stands in for netem needs them): %w", err)
	}
	return nil
}

// newTunWire makes a TUN device named names[i] in namespace nss[i], for
// both ends, and forwards between them until t ends. The devices go away
// with their descriptors; the caller configures their addresses.
func newTunWire(t *testing.T, nss, names [2]string) *tunWire {
	t.Helper()
	w := &tunWire{done: make(chan struct{})}
	w.set(impairment{})
	for i := range 2 {
		f, err := openTun(nss[i], names[i])
		if err != nil {
			for _, g := range w.ends[:i] {
				g.Close()
			}
			t.Fatalf("TUN device %s in %s: %v", names[i], nss[i], err)
		}
		w.ends[i] = f
	}
	for i := range 2 {
		queue := make(chan wirePacket, wireQueueLimit)
		w.wg.Add(2)
		go w.read(i, queue)
		go w.deliver(w.ends[1-i], queue)
	}
	t.Cleanup(w.close)
	return w
}

// openTun creates TUN device name inside namespace ns; its descriptor
// works from any thread afterwards.
func openTun(ns, name string) (*os.File, error) {
	var f *os.File
	err := inNetns(ns, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF: %w", err)
		}
		// Non-blocking, so that the runtime's poller waits on it and
		// Close ends a Read in progress.
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return err
		}
		f = os.NewFile(uintptr(fd), "/dev/net/tun:"+name)
		return nil
	})
	return f, err
}

// set changes what the wire does from the next packet on, both ways;
// packets already waiting leave when they were due.
func (w *tunWire) set(i impairment) {
	w.setFrom(0, i)
	w.setFrom(1, i)
}

// setFrom changes what the wire does to the packets the namespace of
// ends[end] sends, from the next one on.
func (w *tunWire) setFrom(end int, i impairment) { w.imp[end].Store(&i) }

// sent is how many bytes the wire forwarded from ends[end]'s namespace
// (IP packets, headers included).
func (w *tunWire) sent(end int) int64 { return w.bytes[end].Load() }

// report says what the wire did so far, for the log: proof the fault bit.
func (w *tunWire) report() string {
	return fmt.Sprintf("%d packets forwarded, %d delayed (at most %v), %d sent ahead of delayed ones, %d lost, %d dropped (queue full)",
		w.stats.forwarded.Load(), w.stats.delayed.Load(), time.Duration(max(w.wait[0].Load(), w.wait[1].Load())).Round(time.Millisecond),
		w.stats.early.Load(), w.stats.lost.Load(), w.stats.dropped.Load())
}

// read takes the packets ends[end]'s namespace sends and forwards them to
// the other end, or queues them for deliver.
func (w *tunWire) read(end int, queue chan<- wirePacket) {
	defer w.wg.Done()
	defer close(queue)
	from, to := w.ends[end], w.ends[1-end]
	buf := make([]byte, 65535)
	var free time.Time // when the rate-limited line has sent what is queued
	var b burster
	for {
		n, err := from.Read(buf)
		if err != nil {
			return // closed: the test is over
		}
		imp := w.imp[end].Load()
		if (imp.loss > 0 && rand.Float64() < imp.loss) || b.lose(imp, time.Now()) {
			w.stats.lost.Add(1)
			continue
		}
		if imp.rate == 0 && (imp.delay == 0 || (imp.reorder > 0 && rand.Float64() < imp.reorder)) {
			if imp.delay != 0 {
				w.stats.early.Add(1)
			}
			w.forwarded(end, n)
			to.Write(buf[:n]) // an error is a lost packet, as on a wire
			continue
		}
		now := time.Now()
		due := now
		if imp.rate > 0 {
			// The packet starts when the line is free and takes its
			// serialization time; the delay comes after.
			due = later(due, free).Add(time.Duration(int64(n) * int64(time.Second) / imp.rate))
		}
		p := wirePacket{due: due.Add(imp.delay), b: append([]byte(nil), buf[:n]...)}
		select {
		case queue <- p:
			w.stats.delayed.Add(1)
			w.forwarded(end, n)
			if imp.rate > 0 {
				free = due
			}
			if wait := int64(p.due.Sub(now)); wait > w.wait[end].Load() {
				w.wait[end].Store(wait)
			}
		default:
			w.stats.dropped.Add(1)
		}
	}
}

// burster decides which packets an impairment's bursts lose.
type burster struct {
	imp       *impairment // the one counted for; a new one starts over
	seen      int         // packets since it was set
	from, end time.Time   // the burst; lost but for the survivor
	survived  bool
}

func (b *burster) lose(imp *impairment, now time.Time) bool {
	if imp.burst <= 0 {
		return false
	}
	if imp != b.imp {
		*b = burster{imp: imp}
	}
	b.seen++
	if b.seen%imp.burstEvery == 0 {
		b.from, b.end, b.survived = now, now.Add(imp.burst), false
	}
	if !now.Before(b.end) {
		return false
	}
	if !b.survived && now.Sub(b.from) >= imp.burst/2 {
		b.survived = true
		return false
	}
	return true
}

func (w *tunWire) forwarded(end, n int) {
	w.stats.forwarded.Add(1)
	w.bytes[end].Add(int64(n))
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// deliver writes each queued packet when it is due. Every delayed packet
// waits the same delay after the same line, so they are queued in the
// order they are due.
func (w *tunWire) deliver(to *os.File, queue <-chan wirePacket) {
	defer w.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for p := range queue {
		if wait := time.Until(p.due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-w.done:
				return
			}
		}
		if _, err := to.Write(p.b); err != nil && errors.Is(err, os.ErrClosed) {
			return
		}
	}
}

func (w *tunWire) close() {
	close(w.done)
	for _, f := range w.ends {
		f.Close()
	}
	w.wg.Wait()
}
