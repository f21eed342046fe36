package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/device"

	"github.com/hubtunnel/hubtunnel/vpn"
)

// udpHubs measures one relay with Options.UDPHubs idle UDP hubs:
// LightFleets in processes of their own (a socket per hub, each process
// within its file descriptor limit; each hub with its own address in
// 127.(10+p)/16), against the same relay with no hubs and with the hubs
// configured but offline. Each idle UDP hub sends a keepalive every 25 s
// and a new handshake every ~2 minutes; the relay holds its WireGuard peer
// for 15–20 s after each handshake (relay/peers.go).
func (ru *run) udpHubs() error {
	n := ru.o.UDPHubs
	per := ru.o.FleetProcHubs
	if per <= 0 {
		return fmt.Errorf("no room for hubs in a fleet process (FleetProcHubs %d)", per)
	}
	procs := (n + per - 1) / per
	per = (n + procs - 1) / procs // even shares
	rate := ru.o.UDPHubRate       // hubs started a second, all processes together
	if rate <= 0 {
		rate = 400
	}
	dir := filepath.Join(ru.o.Dir, "udphubs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	settle := 3 * time.Second
	m0, err := ru.emptyRelayMem(dir, settle)
	if err != nil {
		return err
	}

	hubs := make([]Hub, n)
	for i := range hubs {
		a := i / 250
		h, err := NewHub("", fmt.Sprintf("u%06d", i+1), fmt.Sprintf("100.%d.%d.%d", 100+a/250, a%250, i%250+1))
		if err != nil {
			return err
		}
		hubs[i] = h
	}
	rn, err := NewRelay(ru.o.Bins, ru.ports, dir, "relay-n", true, hubs)
	if err != nil {
		return err
	}
	tUp, mCfg, err := startCounted(rn, settle)
	if err != nil {
		return err
	}
	defer func() { rn.Proc.Stop() }()

	t0 := time.Now()
	var fleets []*Proc
	defer func() {
		for _, f := range fleets {
			f.Stop()
		}
	}()
	for p := range procs {
		part := hubs[p*per : min((p+1)*per, n)]
		keyFile := filepath.Join(dir, fmt.Sprintf("lightfleet-%d.keys", p))
		if err := WriteKeys(keyFile, hubKeys(part)); err != nil {
			return err
		}
		// At the lowest priority: the fleet is a hundred thousand
		// hubs' worth of handshakes on the relay's own two cores, and
		// at the same priority its six processes took three quarters
		// of the machine, starved the relay and made it miss
		// initiations, whose retries took more (a storm: 58,000 of
		// 100,000 ready after 6 minutes, the relay at a third of a
		// core). Real hubs run on their own hardware.
		f, err := StartProc(dir, fmt.Sprintf("lightfleet-%d", p), nil, "nice", "-n", "19", ru.o.Self, "lightfleet",
			"-relay", fmt.Sprintf("127.0.0.1:%d", rn.AgentPort), "-relay-key", rn.Key.Public().String(),
			"-keys", keyFile, "-first", fmt.Sprintf("127.%d.0.1", 10+p), "-rate", strconv.Itoa(max(rate/procs, 1)))
		if err != nil {
			return err
		}
		fleets = append(fleets, f)
	}
	for p, f := range fleets {
		want := min((p+1)*per, n) - p*per
		if err := f.WaitLog(fmt.Sprintf("light fleet: %d hubs ready", want), 2*time.Minute+time.Duration(n/rate)*2*time.Second); err != nil {
			return err
		}
	}
	tAll := time.Since(t0)
	ru.logf("udphubs: %d hubs ready in %s", n, fmtSec(tAll))
	time.Sleep(5 * time.Second)
	mUp, err := rn.Proc.Mem()
	if err != nil {
		return err
	}
	stUp, _ := relayDebugState(rn.DebugAddr)

	// The window: a hub that keeps WireGuard's keepalives rekeys once in
	// ~125 s (a keepalive on a session older than 120 s), so 150 s would
	// hold a whole round of them; one that pings does not rekey.
	const window = 150 * time.Second
	c0 := fleetCounts(fleets)
	cpu0, err := CPUTime(rn.Proc.PID())
	if err != nil {
		return err
	}
	cpuProfile := filepath.Join(os.TempDir(), "hubtunnel-relay-cpu-udphubs.pb.gz")
	go saveProfile(rn.DebugAddr, "profile?seconds=60", cpuProfile) // within the window; an aid, not a result
	time.Sleep(window)
	cpu1, err := CPUTime(rn.Proc.PID())
	if err != nil {
		return err
	}
	c1 := fleetCounts(fleets)
	mSteady, err := rn.Proc.Mem()
	if err != nil {
		return err
	}
	ms, err := relayMemStats(rn.DebugAddr)
	if err != nil {
		return err
	}
	st, _ := relayDebugState(rn.DebugAddr)
	heap := filepath.Join(os.TempDir(), "hubtunnel-relay-heap-udphubs.pb.gz")
	saveHeap(rn.DebugAddr, heap)
	var fleetRSS int64
	for _, f := range fleets {
		if m, err := f.Mem(); err == nil {
			fleetRSS += m.RSS
		}
	}

	back, err := ru.udpRestart(rn, fleets, n)
	if err != nil {
		return err
	}

	secs := window.Seconds()
	d := c1.sub(c0)
	perHub := float64(mSteady.RSS-m0.RSS) / float64(n)
	ru.r.add("udp hubs", "UDP hubs on one relay (real WireGuard handshakes, a socket each)",
		fmt.Sprintf("%d of %d ready in %s; WireGuard peers %d then %d", c1.ready, n, fmtSec(tAll), stUp.WireGuardPeers, st.WireGuardPeers),
		"all", ptr(c1.ready >= int64(n)))
	ru.r.add("udp hubs", "100,000 UDP hubs on one relay (issue 18)",
		fmt.Sprintf("%d tried, all ready (UDP_HUBS; WireGuard holds at most %d peers at once, and held %d, then %d)", n, device.MaxPeers, stUp.WireGuardPeers, st.WireGuardPeers),
		"100,000", ptr(n >= 100000))
	ru.r.add("udp hubs", "relay RSS: no hubs / "+fmt.Sprint(n)+" configured, offline / all ready / after "+fmtSec(window)+" idle",
		fmt.Sprintf("%s / %s / %s / %s", fmtMB(m0.RSS), fmtMB(mCfg.RSS), fmtMB(mUp.RSS), fmtMB(mSteady.RSS)), "", nil)
	ru.r.add("udp hubs", "relay memory per idle UDP hub (its WireGuard peer only around its handshakes)",
		fmt.Sprintf("%.1f KB (%s for %d)", perHub/1000, fmtMB(mSteady.RSS-m0.RSS), n), "≤ 16 KB (100,000 in 2 GB)", ptr(perHub <= 16000))
	perN := func(v float64) string { return fmt.Sprintf("%.1f KB", v/float64(n)/1000) }
	ru.r.add("udp hubs", "where an idle UDP hub's bytes are (Go's MemStats, per hub): heap in use / goroutine stacks / runtime's own / free, not yet returned",
		fmt.Sprintf("%s / %s / %s / %s (%d goroutines in all)", perN(ms["HeapInuse"]), perN(ms["Stack"]),
			perN(ms["MSpanSys"]+ms["MCacheSys"]+ms["BuckHashSys"]+ms["GCSys"]+ms["OtherSys"]),
			perN(ms["HeapIdle"]-ms["HeapReleased"]), st.Goroutines), "reported", nil)
	ru.r.add("udp hubs", fmt.Sprintf("relay CPU with %d idle UDP hubs", n),
		fmt.Sprintf("%.1f %% of a core (%.0f handshakes/s, %.0f keepalives/s, %.0f pings/s, %.0f pongs/s; %d retries, %d cookies, %d SessionUnknown, %d transport messages to the hubs in the window)",
			100*(cpu1-cpu0).Seconds()/secs, float64(d.handshakes)/secs, float64(d.keepalives)/secs, float64(d.pings)/secs, float64(d.pongs)/secs,
			d.retries, d.cookies, d.unknowns, d.fromRelay), "reported", nil)
	ru.r.add("udp hubs", fmt.Sprintf("%d UDP hubs back after a relay restart (each heard from by the new relay: a ping, a keepalive or a handshake)", n), back.String(), "reported", nil)
	ru.r.section("UDP hubs on one relay", `The relay (hubrelay, UDP on) is started twice more: with no hubs, and with %d `+"`[[hub]]`"+` entries (generated keys,
tunnel addresses 100.100–101.x.y); it took %s to start with them. The hubs are %d `+"`hubbench lightfleet`"+` processes of
%d hubs or fewer, each hub with its own key, UDP socket and loopback address (process p's in 127.(10+p)/16: WireGuard
under load lets each source address 20 handshakes a second, and with one address per process a start left the relay
under load and thousands of hubs retrying). A light hub is what an idle
UDP agent is to the relay and no more: the WireGuard handshake (`+"`vpn/noise`"+` plays the initiator to the end), a keepalive
right after each handshake, a ping every 25 s (persistent_keepalive) and, once the relay answered one, no WireGuard
keepalives (before: every 25 s after the last, and a new handshake when one goes out on a session older than 120 s), a
handshake again after three pings without an answer, again after 5 s without an answer, at once on the relay's
SessionUnknown, and MAC2 once the relay sent a cookie. It has no netstack and no wireguard-go device (Fleet's TCP hubs have both: ~160 KB each).
They start %d a second in all, and run at nice 19 so as not to starve the relay of this machine's cores (real hubs have their own). "Ready" is every hub with a completed handshake. RSS is VmRSS 3 s after start (no hubs,
offline), 5 s after the last hub was ready, and %s later (the idle row; per hub = (that − RSS with no hubs) / %d): a
hub that pings does not rekey, and the relay removes a UDP hub's WireGuard peer 15–20 s after a handshake that no data
followed (relay/peers.go), so an idle hub holds none after its first handshake. The relay's CPU is its utime+stime over that window. Heap profile at its end: %s;
CPU profile of its first 60 s: %s. The fleet processes held %s together. Then the relay is restarted (SIGTERM: it
keeps the hubs' sessions for the relay that follows, which takes each hub up from them without a handshake, and reaches it
by a handshake of its own when a request comes); "back" is every hub heard from by the new relay (a ping or keepalive on a
session it took up, or a handshake), the relay's CPU over that time.`,
		n, fmtSec(tUp), procs, per, rate, fmtSec(window), n, heap, cpuProfile, fmtMB(fleetRSS))
	return nil
}

func hubKeys(hubs []Hub) []vpn.PrivateKey {
	ks := make([]vpn.PrivateKey, len(hubs))
	for i, h := range hubs {
		ks[i] = h.Key
	}
	return ks
}

// lightCounts are a LightFleet process's counters, from its log.
type lightCounts struct {
	ready, handshakes, keepalives, retries, cookies, unknowns, fromRelay, pings, pongs int64
	sinceMark                                                                          int64 // a gauge: hubs with a session since the mark
}

func (c lightCounts) add(d lightCounts) lightCounts {
	return lightCounts{c.ready + d.ready, c.handshakes + d.handshakes, c.keepalives + d.keepalives, c.retries + d.retries,
		c.cookies + d.cookies, c.unknowns + d.unknowns, c.fromRelay + d.fromRelay, c.pings + d.pings, c.pongs + d.pongs, c.sinceMark + d.sinceMark}
}

func (c lightCounts) sub(d lightCounts) lightCounts {
	return lightCounts{c.ready - d.ready, c.handshakes - d.handshakes, c.keepalives - d.keepalives, c.retries - d.retries,
		c.cookies - d.cookies, c.unknowns - d.unknowns, c.fromRelay - d.fromRelay, c.pings - d.pings, c.pongs - d.pongs, c.sinceMark}
}

var lightCountsLine = regexp.MustCompile(`light fleet: counts ready=(\d+) handshakes=(\d+) keepalives=(\d+) retries=(\d+) cookies=(\d+) unknowns=(\d+) from_relay=(\d+) pings=(\d+) pongs=(\d+) since_mark=(\d+)`)

// fleetCounts sums the latest counts line of every process (written every
// second).
func fleetCounts(fleets []*Proc) lightCounts {
	var sum lightCounts
	for _, f := range fleets {
		all := lightCountsLine.FindAllStringSubmatch(f.Log(), -1)
		if len(all) == 0 {
			continue
		}
		m := all[len(all)-1]
		v := make([]int64, 10)
		for i := range v {
			v[i], _ = strconv.ParseInt(m[i+1], 10, 64)
		}
		sum = sum.add(lightCounts{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]})
	}
	return sum
}

// udpBack is how the UDP hubs came back after a relay restart.
type udpBack struct {
	n, back   int64 // hubs, and those the new relay heard from
	took, cpu time.Duration
	d         lightCounts // the fleets' counts over that time
}

func (b udpBack) String() string {
	return fmt.Sprintf("%d of %d in %s from the restart, relay CPU %.0f %% of a core over that time, its start included (%d of them handshook meanwhile; %d SessionUnknown taken, %d retries, %d cookies)",
		b.back, b.n, fmtSec(b.took), 100*b.cpu.Seconds()/b.took.Seconds(), b.d.sinceMark, b.d.unknowns, b.d.retries, b.d.cookies)
}

// udpRestart stops the relay, marks the fleets while it is down (a
// handshake after the mark is one with the relay that follows), starts it
// again with the same config and store, and waits until the new relay has
// heard from every hub (a keepalive or a handshake: relay.DebugState's
// UDPHubsHeard), for at most udpBackWithin.
func (ru *run) udpRestart(rn *Relay, fleets []*Proc, n int) (udpBack, error) {
	const udpBackWithin = 10 * time.Minute
	rn.Proc.Stop()
	for _, f := range fleets {
		if err := f.Signal(syscall.SIGUSR1); err != nil {
			return udpBack{}, err
		}
	}
	// A counts line after the mark says so: none since it.
	if !waitFor(10*time.Second, func() bool { return fleetCounts(fleets).sinceMark == 0 }) {
		return udpBack{}, fmt.Errorf("udphubs: the fleets did not take the mark")
	}
	c0 := fleetCounts(fleets)
	t0 := time.Now()
	if err := rn.Start(); err != nil {
		return udpBack{}, err
	}
	heard := 0
	waitFor(udpBackWithin, func() bool {
		st, err := relayDebugState(rn.DebugAddr)
		heard = st.UDPHubsHeard
		return err == nil && heard >= n
	})
	took := time.Since(t0)
	cpu, err := CPUTime(rn.Proc.PID()) // all the new process's, its start included
	if err != nil {
		return udpBack{}, err
	}
	c1 := fleetCounts(fleets)
	ru.logf("udphubs: %d of %d hubs heard from %s after the relay restart (%d handshook)", heard, n, fmtSec(took), c1.sinceMark)
	return udpBack{n: int64(n), back: int64(heard), took: took, cpu: cpu, d: c1.sub(c0)}, nil
}

// waitFor calls cond once a second until it is true or within has passed,
// and reports whether it was.
func waitFor(within time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(within); ; time.Sleep(time.Second) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
