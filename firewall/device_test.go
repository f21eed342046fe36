package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
)

// wgOffset is where wireguard-go's packets start in their buffers
// (device.MessageTransportOffsetContent).
const wgOffset = 16

// fakeTUN is an inner tun.Device that records what is written to it.
type fakeTUN struct {
	record bool  // keep copies of written packets (allocates)
	err    error // returned by Write

	mu      sync.Mutex
	calls   int      // Write calls
	packets [][]byte // copies of bufs[i][offset:], in order, if record
	written atomic.Uint64
	closed  bool

	read []byte // what Read returns
}

var _ tun.Device = (*fakeTUN)(nil)

func (f *fakeTUN) Write(bufs [][]byte, offset int) (int, error) {
	f.written.Add(uint64(len(bufs)))
	if f.record {
		f.mu.Lock()
		f.calls++
		for _, b := range bufs {
			f.packets = append(f.packets, slices.Clone(b[offset:]))
		}
		f.mu.Unlock()
	}
	if f.err != nil {
		return 0, f.err
	}
	return len(bufs), nil
}

func (f *fakeTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	sizes[0] = copy(bufs[0][offset:], f.read)
	return 1, nil
}

func (f *fakeTUN) File() *os.File           { return nil }
func (f *fakeTUN) MTU() (int, error)        { return 1420, nil }
func (f *fakeTUN) Name() (string, error)    { return "fake", nil }
func (f *fakeTUN) Events() <-chan tun.Event { return nil }
func (f *fakeTUN) BatchSize() int           { return 128 }
func (f *fakeTUN) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// batch lays packets out as wireguard-go does: each at wgOffset in its own
// buffer with spare room behind it.
func batch(pkts ...[]byte) [][]byte {
	bufs := make([][]byte, len(pkts))
	for i, p := range pkts {
		b := make([]byte, wgOffset+len(p), wgOffset+len(p)+64)
		copy(b[wgOffset:], p)
		bufs[i] = b
	}
	return bufs
}

// logRecorder is a logf that keeps its lines.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logRecorder) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

// fakeClock is a settable clock for Device.now.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := new(fakeClock)
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func wrapTest(inner tun.Device, p Policy) (*Device, *logRecorder, *fakeClock) {
	log, clock := new(logRecorder), newFakeClock()
	d := Wrap(inner, p, log.logf)
	d.now = clock.now
	d.loggedAt = clock.now()
	return d, log, clock
}

func TestWrite(t *testing.T) {
	var (
		pass1  = ip4(relay4, protoTCP, tcp(80))
		pass2  = ip6(relay6, protoTCP, tcp(443))
		pass3  = ip4(peer4, protoICMP, icmp(8, 0))
		source = ip4(stranger4, protoTCP, tcp(80))
		port   = ip4(relay4, protoTCP, tcp(22))
		proto  = ip6(relay6, protoICMPv6, icmp(135, 0))
		broken = cut(ip4(relay4, protoTCP, tcp(80)), 30)
	)
	inner := &fakeTUN{record: true}
	d, _, _ := wrapTest(inner, *std)

	bufs := batch(source, pass1, port, proto, pass2, broken, pass3, source)
	orig := slices.Clone(bufs)
	n, err := d.Write(bufs, wgOffset)
	if err != nil || n != len(orig) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(orig))
	}
	if inner.calls != 1 {
		t.Errorf("inner Write called %d times, want once", inner.calls)
	}
	if want := [][]byte{pass1, pass2, pass3}; !slices.EqualFunc(inner.packets, want, slices.Equal) {
		t.Errorf("inner got %x\nwant %x", inner.packets, want)
	}
	// bufs was reordered, not rewritten: the same buffers, each once.
	for _, b := range orig {
		if c := countSame(bufs, b); c != 1 {
			t.Errorf("buffer %p appears %d times in bufs after Write", &b[0], c)
		}
	}
	want := Stats{Passed: 3, DropSource: 2, DropPort: 1, DropProto: 1, DropMalformed: 1}
	if got := d.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	if got := d.Stats().Dropped(); got != 5 {
		t.Errorf("Dropped = %d, want 5", got)
	}

	// Nothing passes: the inner device is not called.
	n, err = d.Write(batch(source, port), wgOffset)
	if err != nil || n != 2 || inner.calls != 1 {
		t.Errorf("all-drop Write = %d, %v, inner calls %d; want 2, nil, 1", n, err, inner.calls)
	}
	// An empty batch neither.
	if n, err := d.Write(nil, wgOffset); n != 0 || err != nil || inner.calls != 1 {
		t.Errorf("empty Write = %d, %v, inner calls %d; want 0, nil, 1", n, err, inner.calls)
	}
	// A buffer shorter than the offset is malformed, not a panic.
	if n, err := d.Write([][]byte{make([]byte, 4)}, wgOffset); n != 1 || err != nil {
		t.Errorf("short-buffer Write = %d, %v; want 1, nil", n, err)
	}
	if got := d.Stats().DropMalformed; got != 2 {
		t.Errorf("DropMalformed = %d, want 2", got)
	}
}

func countSame(bufs [][]byte, b []byte) int {
	c := 0
	for _, x := range bufs {
		if &x[0] == &b[0] {
			c++
		}
	}
	return c
}

func TestWriteError(t *testing.T) {
	errInner := errors.New("inner broke")
	inner := &fakeTUN{record: true, err: errInner}
	d, _, _ := wrapTest(inner, *std)
	n, err := d.Write(batch(ip4(stranger4, protoTCP, tcp(80)), ip4(relay4, protoTCP, tcp(80))), wgOffset)
	if n != 0 || !errors.Is(err, errInner) {
		t.Errorf("Write = %d, %v; want 0, %v", n, err, errInner)
	}
}

func TestPassThrough(t *testing.T) {
	// Outbound packets are not filtered, whatever they are.
	out := ip4(hub4, protoUDP, udp(53))
	inner := &fakeTUN{read: out}
	d, _, _ := wrapTest(inner, Policy{})
	bufs, sizes := batch(make([]byte, 1500)), make([]int, 1)
	if n, err := d.Read(bufs, sizes, wgOffset); n != 1 || err != nil || !slices.Equal(bufs[0][wgOffset:wgOffset+sizes[0]], out) {
		t.Errorf("Read = %d, %v, %x; want 1, nil, %x", n, err, bufs[0][wgOffset:wgOffset+sizes[0]], out)
	}
	if mtu, err := d.MTU(); mtu != 1420 || err != nil {
		t.Errorf("MTU = %d, %v", mtu, err)
	}
	if name, err := d.Name(); name != "fake" || err != nil {
		t.Errorf("Name = %q, %v", name, err)
	}
	if d.BatchSize() != 128 || d.File() != nil || d.Events() != nil {
		t.Errorf("BatchSize, File or Events not passed through")
	}
	if err := d.Close(); err != nil || !inner.closed {
		t.Errorf("Close = %v, inner closed %v", err, inner.closed)
	}
	if got := d.Stats(); got != (Stats{}) {
		t.Errorf("Stats after reads = %+v, want zero", got)
	}
}

func TestSetPolicy(t *testing.T) {
	inner := &fakeTUN{record: true}
	ports := []uint16{80}
	allowed := []netip.Prefix{netip.MustParsePrefix("10.77.0.1/32")}
	d, _, _ := wrapTest(inner, Policy{Allowed: allowed, TCPPorts: ports})

	pkt80, pkt443 := ip4(relay4, protoTCP, tcp(80)), ip4(relay4, protoTCP, tcp(443))
	d.Write(batch(pkt80, pkt443), wgOffset)

	// Changing the caller's slices later changes nothing.
	ports[0] = 443
	allowed[0] = netip.MustParsePrefix("192.0.2.0/24")
	d.Write(batch(pkt80, pkt443), wgOffset)
	if got := d.Policy(); !slices.Equal(got.TCPPorts, []uint16{80}) || got.Allowed[0] != netip.MustParsePrefix("10.77.0.1/32") {
		t.Errorf("Policy = %+v after the caller changed its slices", got)
	}

	d.SetPolicy(Policy{Allowed: std.Allowed, TCPPorts: []uint16{443}})
	d.Write(batch(pkt80, pkt443), wgOffset)

	if want := [][]byte{pkt80, pkt80, pkt443}; !slices.EqualFunc(inner.packets, want, slices.Equal) {
		t.Errorf("inner got %x\nwant %x", inner.packets, want)
	}
	if got, want := d.Stats(), (Stats{Passed: 3, DropPort: 3}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}

	// Policy returns a copy.
	p := d.Policy()
	p.TCPPorts[0] = 80
	if d.Policy().TCPPorts[0] != 443 {
		t.Errorf("changing what Policy returned changed the policy")
	}
}

func TestDropLogRateLimited(t *testing.T) {
	d, log, clock := wrapTest(&fakeTUN{}, *std)
	drop := ip4(stranger4, protoTCP, tcp(80))
	pass := ip4(relay4, protoTCP, tcp(80))

	for range 10 {
		d.Write(batch(pass), wgOffset) // passes are never logged
	}
	if l := log.get(); len(l) != 0 {
		t.Fatalf("logged %q for passing packets", l)
	}

	clock.advance(5 * time.Second)
	d.Write(batch(drop), wgOffset) // the first drop is reported at once
	for range 100 {
		clock.advance(100 * time.Millisecond)
		d.Write(batch(drop, pass, ip4(relay4, protoUDP, udp(53))), wgOffset)
	}
	lines := log.get()
	if len(lines) != 1 {
		t.Fatalf("logged %d lines within %v, want 1: %q", len(lines), logInterval, lines)
	}
	if want := "firewall: dropped 1 packets in the last 5s (source not allowed 1, port not mapped 0, protocol 0, malformed 0)"; lines[0] != want {
		t.Errorf("first line %q\nwant       %q", lines[0], want)
	}

	clock.advance(logInterval)
	d.Write(batch(cut(drop, 30)), wgOffset)
	lines = log.get()
	if len(lines) != 2 {
		t.Fatalf("logged %d lines after %v, want 2: %q", len(lines), logInterval, lines)
	}
	if want := "firewall: dropped 201 packets in the last 40s (source not allowed 100, port not mapped 100, protocol 0, malformed 1)"; lines[1] != want {
		t.Errorf("second line %q\nwant        %q", lines[1], want)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "firewall: ") {
			t.Errorf("line %q lacks the package prefix", l)
		}
	}
}

func TestWriteAllocs(t *testing.T) {
	d, _, _ := wrapTest(&fakeTUN{}, *std)
	pkts := make([][]byte, 0, len(checkTests))
	for _, tt := range checkTests {
		pkts = append(pkts, tt.pkt)
	}
	bufs := batch(pkts...)
	// The clock stands still: the drop summary is logged once, in the
	// warm-up run, and never again.
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := d.Write(bufs, wgOffset); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Write allocates %v times per batch of %d", allocs, len(bufs))
	}
}

// TestConcurrentWrite writes from several goroutines, as wireguard-go does
// with one per peer, while the policy flips and the counters are read.
func TestConcurrentWrite(t *testing.T) {
	const writers, rounds = 8, 300
	inner := &fakeTUN{}
	d, log, clock := wrapTest(inner, *std)
	other := Policy{Allowed: std.Allowed, TCPPorts: []uint16{80, 22}} // 22 passes only under this one

	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if i%2 == 0 {
				d.SetPolicy(other)
			} else {
				d.SetPolicy(*std)
			}
			clock.advance(time.Second)
			if s := d.Stats(); s.Passed+s.Dropped() > writers*rounds*4 {
				t.Errorf("Stats %+v counts more packets than were written", s)
			}
		}
	})
	var writersWG sync.WaitGroup
	for range writers {
		writersWG.Go(func() {
			for range rounds {
				bufs := batch(
					ip4(relay4, protoTCP, tcp(80)),    // always passes
					ip4(stranger4, protoTCP, tcp(80)), // never
					ip6(relay6, protoTCP, tcp(22)),    // under other only
					ip6(relay6, protoUDP, udp(80)),    // never
				)
				if n, err := d.Write(bufs, wgOffset); n != 4 || err != nil {
					t.Errorf("Write = %d, %v", n, err)
				}
			}
		})
	}
	writersWG.Wait()
	close(done)
	wg.Wait()

	s := d.Stats()
	total := uint64(writers * rounds)
	if s.Passed+s.Dropped() != 4*total {
		t.Errorf("Stats %+v: %d packets counted, %d written", s, s.Passed+s.Dropped(), 4*total)
	}
	if s.DropSource != total || s.Passed < total || s.Passed > 2*total || s.DropPort != 3*total-s.Passed {
		t.Errorf("Stats %+v inconsistent with %d batches", s, total)
	}
	if got := inner.written.Load(); got != s.Passed {
		t.Errorf("inner got %d packets, Stats.Passed = %d", got, s.Passed)
	}
	if len(log.get()) == 0 {
		t.Errorf("no drop summary logged")
	}
}

func BenchmarkWrite(b *testing.B) {
	d, _, _ := wrapTest(&fakeTUN{}, *std)
	pkts := make([][]byte, 128)
	for i := range pkts {
		switch i % 4 {
		case 0, 1:
			pkts[i] = ip4(relay4, protoTCP, cat(tcp(80), make([]byte, 1360)))
		case 2:
			pkts[i] = ip6(relay6, protoTCP, cat(tcp(443), make([]byte, 1340)))
		default:
			pkts[i] = ip4(stranger4, protoTCP, tcp(80))
		}
	}
	bufs := batch(pkts...)
	b.ReportAllocs()
	for b.Loop() {
		d.Write(bufs, wgOffset)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(bufs)), "ns/packet")
}
