package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/relay"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// The network between hub and relay, made bad with the kernel's own tools.
// Each subtest puts the relay in one network namespace and the agent (with
// ccusim as the hub's services) in another, joined by a veth pair, and a
// user fetches through the relay from inside the relay's namespace with an
// app token. One fault per subtest, on both ends of the veth: packet loss,
// delay and reordering (tc netem; where the kernel has no sch_netem, loss
// falls back to nftables, and delay and reordering to a userspace wire of
// TUN devices in place of the veth, tunwire_test.go), a blackhole, a
// 1280-byte MTU, and the relay moving to another address. While the fault holds, requests and a download
// go through; after it is removed the tunnel must be back by itself, a
// download caught in it must have ended (complete, or an error: not a
// hang), and the agent's and the relay's goroutines, file descriptors and
// memory must settle where they were before.

const (
	netemRelayIP  = "10.77.0.1"
	netemMovedIP  = "10.77.0.9" // where the relay moves to (fault "address")
	netemAgentIP  = "10.77.0.2"
	netemRelayDNS = "relay.netem.test"
	// What usage may differ by after a fault, against before it: a
	// goroutine or descriptor the runtime or a pool keeps, and the heap's
	// noise (a download's buffers the scavenger returns slowly).
	slackGoroutines = 6
	slackFDs        = 4
	slackRSSKiB     = 24 << 10
)

// netemSupport says, once per run, whether tc can add a netem qdisc here
// (CONFIG_NET_SCH_NETEM), and why not.
var netemSupport = sync.OnceValue(func() error {
	ns := fmt.Sprintf("htprobe-%d", os.Getpid())
	if out, err := runErr("ip", "netns", "add", ns); err != nil {
		return fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	defer runErr("ip", "netns", "del", ns)
	if out, err := runErr("ip", "-n", ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1"); err != nil {
		return fmt.Errorf("ip link add veth: %v: %s", err, out)
	}
	if out, err := runErr("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "p0", "root", "netem", "delay", "1ms"); err != nil {
		return fmt.Errorf("the kernel has no netem qdisc (CONFIG_NET_SCH_NETEM): tc qdisc add … netem: %s", strings.TrimSpace(out))
	}
	return nil
})

// fault is one way to make the link bad; apply and remove run on a bed
// whose tunnel is up.
type fault struct {
	name     string
	hold     time.Duration // the blackhole: how long it holds, a download running through it
	apply    func(b *faultBed)
	remove   func(b *faultBed)
	needs    func() error // nil, or why it cannot run here (it is skipped)
	downSize int64        // the download made while the fault holds
	tun      bool         // joins the namespaces with a tunWire, not a veth
	minRate  int64        // bytes per second that download must reach, or 0
	soakOnly string       // the transport on which it takes minutes: run by make soak only
	lossy    bool         // the tunnel's TCP loses packets over UDP: the sender's counters show its resends
	upload   bool         // the transfer while it holds is an upload of downSize (POST /echo), not a download
}

// blackholeFor is how long the blackhole holds in make soak. Sixty seconds
// because the issue asks for it (#16), and because it is longer than what
// either end takes in stride: the agent's relay connection sees no ACK for a minute
// (TCP retransmissions back off to 30 s and more), WireGuard's handshakes
// time out (REKEY_TIMEOUT 5 s, ×3) and the UDP agent re-resolves the relay,
// yet it is shorter than TCP_USER_TIMEOUT (120 s), so the TCP agent may
// keep its connection or lose it, depending on where the backoff lands:
// the test accepts both and requires the tunnel back either way.
const blackholeFor = 60 * time.Second

// shortBlackhole is its length in make test: long enough for WireGuard's
// handshakes to time out and the relay connection's retransmissions to
// back off, short enough for the suite's time.
const shortBlackhole = 15 * time.Second

// soaking says whether make soak runs the tests (HT_SOAK is its length).
func soaking() bool { return os.Getenv("HT_SOAK") != "" }

func netemFault(name string, args ...string) fault {
	return fault{
		name:     name,
		needs:    netemSupport,
		downSize: 2 << 20,
		apply:    func(b *faultBed) { b.qdisc("add", args...) },
		remove:   func(b *faultBed) { b.qdisc("del") },
	}
}

// wireFault is a netem fault made by the userspace wire instead.
func wireFault(name string, imp impairment) fault {
	return fault{
		name:     name,
		needs:    needTun,
		tun:      true,
		downSize: 2 << 20,
		apply:    func(b *faultBed) { b.wire.set(imp) },
		remove: func(b *faultBed) {
			b.wire.set(impairment{})
			b.t.Logf("the wire (%v): %s", imp, b.wire.report())
		},
	}
}

// slowUplink is the hub's uplink as a DSL line: the packets from the
// agent to the relay leave at rate, and wait for it in a queue as deep as
// the wire's (1000 packets: 6 s at 2 Mbit/s), the other way is clean. The
// tunnel's TCP sees round trips of seconds, longer than its retransmission
// timeout's cap (vpn/netstack maxRTO), and must not collapse into spurious
// retransmissions: the download from the hub must reach half the line's
// rate in file bytes. Measured: 92 % over UDP, 79-85 % over TCP (72 %
// under -race); a collapse would be a fraction of that. Not a speed test:
// the line, not the CPU, sets the pace.
func slowUplink(rate int64) fault {
	imp := impairment{rate: rate}
	// Mbps, not Mbit/s: a slash in a subtest's name would split -run's levels.
	f := wireFault(fmt.Sprintf("slow uplink %g Mbps", float64(rate)*8/1e6), imp)
	f.downSize = 3 << 20
	f.minRate = rate / 2
	f.apply = func(b *faultBed) { b.wire.setFrom(agentEnd, imp) }
	return f
}

// burstLoss loses, from the agent, everything for burst but one packet in
// the middle, every 3000 packets: a flight dropped by a full queue on the
// path. Over UDP the tunnel's TCP sees the loss; after its retransmission
// timeout gVisor's default recovery (RACK) resent about two segments per
// timeout when fewer than three above the hole had arrived (vpn/netstack
// TestBurstLoss): 11.5 of 16 MiB came through in 30 s. A burst is to cost
// a timeout or two, not the download's pace.
func burstLoss(burst time.Duration) fault {
	imp := impairment{burst: burst, burstEvery: 3000}
	f := wireFault(fmt.Sprintf("burst loss %v", burst), imp)
	f.downSize = 16 << 20
	f.minRate = 1e6
	f.lossy = true
	f.apply = func(b *faultBed) { b.wire.setFrom(agentEnd, imp) }
	return f
}

// reversed is the agent-side fault f the other way round, named name:
// imp holds up the relay's packets to the agent instead, in an upload to
// the hub.
func reversed(f fault, name string, imp impairment) fault {
	f.name, f.upload = name, true
	f.apply = func(b *faultBed) { b.wire.setFrom(1-agentEnd, imp) }
	return f
}

// slowDownlink is slowUplink the other way: the relay's packets to the
// agent leave at rate through the same deep queue.
func slowDownlink(rate int64) fault {
	return reversed(slowUplink(rate), fmt.Sprintf("slow downlink %g Mbps upload", float64(rate)*8/1e6), impairment{rate: rate})
}

// burstUpload is burstLoss the other way: the relay's packets are lost.
func burstUpload(burst time.Duration) fault {
	return reversed(burstLoss(burst), fmt.Sprintf("burst loss %v upload", burst), impairment{burst: burst, burstEvery: 3000})
}

func faults() []fault {
	loss := netemFault("loss 5%", "loss", "5%")
	loss.lossy = true
	if netemSupport() != nil {
		// Without netem, nftables drops as many: numgen random mod 100 < 5.
		loss.needs = needNft
		loss.apply = func(b *faultBed) { b.nftDrop("numgen random mod 100 < 5") }
		loss.remove = func(b *faultBed) { b.nftFlush() }
	}
	delay := netemFault("delay 300ms", "delay", "300ms")
	reorder := netemFault("reorder 25% with 50ms delay", "delay", "50ms", "reorder", "25%", "50%")
	if netemSupport() != nil {
		delay = wireFault(delay.name, impairment{delay: 300 * time.Millisecond})
		reorder = wireFault(reorder.name, impairment{delay: 50 * time.Millisecond, reorder: 0.25})
	}
	// Over UDP, reordering reaches the tunnel's TCP: a quarter of the
	// segments overtaking the rest by 50 ms keeps gVisor's congestion
	// window small (2 MiB took 24-26 s, about 85 KB/s; over the TCP
	// transport the relay connection puts them back in order: 6.5 s). 1 MiB
	// keeps the 30 s bound a hang detector, not a race.
	reorder.downSize = 1 << 20
	blackhole := shortBlackhole
	if soaking() {
		blackhole = blackholeFor
	}
	return []fault{
		loss,
		delay,
		reorder,
		slowUplink(2e6 / 8),
		slowDownlink(2e6 / 8),
		burstLoss(20 * time.Millisecond),
		burstUpload(20 * time.Millisecond),
		{
			name: fmt.Sprintf("blackhole %v", blackhole), hold: blackhole, needs: needNft, downSize: 64 << 20,
			apply:  func(b *faultBed) { b.nftDrop("") },
			remove: func(b *faultBed) { b.nftFlush() },
		},
		{
			name: "mtu 1280", downSize: 8 << 20,
			apply:  func(b *faultBed) { b.setMTU(1280) },
			remove: func(b *faultBed) { b.setMTU(1500) },
		},
		{
			name: "relay address moves", downSize: 2 << 20, soakOnly: "tcp",
			apply:  func(b *faultBed) { b.moveRelay() },
			remove: func(*faultBed) {},
		},
	}
}

func needNft() error {
	if _, err := exec.LookPath("nft"); err != nil {
		return errors.New("nft is not installed (scripts/deps.sh installs nftables)")
	}
	return nil
}

// TestNetworkFaults runs every fault on both transports, all in parallel
// (each in namespaces of its own).
func TestNetworkFaults(t *testing.T) {
	needRoot(t, "for network namespaces")
	need(t, "for network namespaces", "ip")
	if err := canMakeNetns(); err != nil {
		t.Skipf("network namespaces cannot be made here: %v", err)
	}
	t.Parallel()
	for _, f := range faults() {
		for _, transport := range []string{"tcp", "udp"} {
			t.Run(f.name+"/"+transport, func(t *testing.T) {
				t.Parallel()
				if f.needs != nil {
					if err := f.needs(); err != nil {
						missing(t, "fault %q cannot be made here: %v", f.name, err)
					}
				}
				runFault(t, f, transport)
			})
		}
	}
}

func canMakeNetns() error {
	ns := fmt.Sprintf("htcheck-%d", os.Getpid())
	if out, err := runErr("ip", "netns", "add", ns); err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(out))
	}
	runErr("ip", "netns", "del", ns)
	return nil
}

func runFault(t *testing.T, f fault, transport string) {
	if f.soakOnly == transport && !soaking() {
		t.Skipf("%s over %s takes minutes (TCP_USER_TIMEOUT, then a redial): make soak runs it", f.name, transport)
	}
	b := newFaultBed(t, transport, f.tun)
	b.waitConnected(30 * time.Second)
	// Warm up: what a user does before the fault, so that pools and
	// kept connections exist when the baseline is taken.
	b.mustFetch("before the fault")
	b.mustDownload(2<<20, 60*time.Second)
	before := b.settledUsage()
	t.Logf("%s over %s: before: %s", f.name, transport, before)

	var inflight chan error
	if f.hold > 0 {
		// A download that is running when the network goes away.
		inflight = b.startDownload(f.downSize, f.hold+3*time.Minute)
	}
	f.apply(b)
	if f.hold > 0 {
		hold := time.NewTimer(f.hold) // the fault's length, not a wait for something
		<-hold.C
	} else {
		// While it holds: the tunnel keeps (or gets back) its promise.
		if f.name == "relay address moves" && transport == "tcp" {
			// The agent's dead-connection bound (keepalives and
			// TCP_USER_TIMEOUT: 2 minutes), then a redial that resolves
			// the name again. Over UDP nothing needs to be noticed:
			// the relay's next packet to the hub comes from its new
			// address, and WireGuard's roaming answers there.
			b.waitReconnected(3 * time.Minute)
		}
		b.mustFetchWithin("while the fault holds", 90*time.Second)
		what := "download"
		if f.upload {
			what = "upload"
		}
		resent0, timeouts0, err0 := b.resends(f.upload)
		drops0, counted := b.senderDrops(f.upload)
		start, sent := time.Now(), b.wireSent()
		b.mustTransfer(f.upload, f.downSize, 30*time.Second)
		moved, transfers := f.downSize, 1
		// Over UDP the senders hand the kernel up to 64 packets at once
		// (GSO), and nftables drops such a batch as one packet: 2 MiB may
		// leave in a few dozen, and a 5% loss missed all of them now and
		// then (CI at 88c5172: no drop in the download, so nothing to
		// resend). Transfer again until the fault has bitten, a few times.
		for counted && f.lossy && transfers < 8 {
			if drops, _ := b.senderDrops(f.upload); drops-drops0 >= 3 {
				break
			}
			b.mustTransfer(f.upload, f.downSize, 30*time.Second)
			moved, transfers = moved+f.downSize, transfers+1
		}
		if counted {
			drops, _ := b.senderDrops(f.upload)
			t.Logf("nftables dropped %d of the sender's packets (or batches of them) in the %s", drops-drops0, what)
			if drops == drops0 {
				t.Errorf("the fault dropped none of the sender's packets in %d %ss: the resend check below proves nothing", transfers, what)
			}
		}
		if resent1, timeouts1, err := b.resends(f.upload); err0 == nil && err == nil && f.lossy {
			resent := resent1 - resent0
			t.Logf("the sender's TCP resent %d segments of the %s (%d retransmission timeouts)", resent, what, timeouts1-timeouts0)
			if transport == "udp" && resent == 0 {
				t.Errorf("the sender's counters show no TCP segment resent in the %s, which lost packets", what)
			}
		}
		if f.minRate > 0 {
			took := time.Since(start)
			rate := float64(moved) / took.Seconds()
			if f.upload {
				t.Logf("goodput %.0f KB/s, the echo's way back included", rate/1e3)
			} else {
				t.Logf("goodput %.0f KB/s; the wire carried %.3f bytes from the agent per byte downloaded", rate/1e3, float64(b.wireSent()-sent)/float64(moved))
			}
			if rate < float64(f.minRate) {
				t.Errorf("%s of %d KiB took %v: %.0f KB/s, want at least %.0f KB/s", what, moved>>10, took.Round(time.Millisecond), rate/1e3, float64(f.minRate)/1e3)
			}
		}
	}
	removed := time.Now()
	f.remove(b)

	b.waitConnected(2 * time.Minute)
	b.mustFetchWithin("after the fault", 2*time.Minute)
	t.Logf("%s over %s: tunnel back %v after the fault was removed", f.name, transport, time.Since(removed).Round(time.Millisecond))
	if inflight != nil {
		select {
		case err := <-inflight:
			t.Logf("the download caught in the fault ended: %v", errOrOK(err))
		case <-time.After(3 * time.Minute):
			t.Fatalf("the download caught in the fault neither completed nor failed 3 minutes after the fault ended")
		}
	}
	b.mustDownload(2<<20, 60*time.Second)
	after := b.waitUsageBack(before, 90*time.Second)
	t.Logf("%s over %s: after: %s", f.name, transport, after)
}

func errOrOK(err error) string {
	if err == nil {
		return "complete, every byte right"
	}
	return "failed cleanly: " + err.Error()
}

// faultBed is a relay and an agent in namespaces of their own, joined by a
// veth pair or a tunWire.
type faultBed struct {
	t              *testing.T
	transport      string
	nsR, nsA       string   // the relay's and the agent's namespaces
	linkR, linkA   string   // the link's ends in them: the veth's, or the wire's TUN devices
	wire           *tunWire // nil with a veth
	hosts          string   // the agent's /etc/hosts (ip netns exec binds /etc/netns/NS/hosts over it)
	relayAddr      string   // relay.netem.test:port, as the agent knows it
	rb             *testbed.Relay
	hub            testbed.Hub
	relay, agent   *proc
	ui             string       // the agent's status API, inside nsA
	inR, inA       *http.Client // clients whose connections start in nsR, nsA
	files          string       // ccusim's files folder
	mu             sync.Mutex
	downloads      map[int64]string // size → file name
	relayConnected int              // "hub demo connected" lines seen when the relay last moved
	dir            string           // the relay's and the agent's files
	restarts       int              // relay restarts (make soak)
}

// agentEnd is the tunWire's end in the agent's namespace (newFaultBed
// makes the relay's first).
const agentEnd = 1

// wireSent is how many bytes the agent sent over the wire, or 0 over a veth.
func (b *faultBed) wireSent() int64 {
	if b.wire == nil {
		return 0
	}
	return b.wire.sent(agentEnd)
}

func newFaultBed(t *testing.T, transport string, tun bool) *faultBed {
	t.Helper()
	var id [3]byte
	rand.Read(id[:])
	sfx := hex.EncodeToString(id[:]) // unique per run: a crashed run's leftovers never collide
	b := &faultBed{t: t, transport: transport, nsR: "htr-" + sfx, nsA: "hta-" + sfx,
		linkR: "htr" + sfx, linkA: "hta" + sfx, files: t.TempDir(), downloads: map[int64]string{}}
	etc := filepath.Join("/etc/netns", b.nsA)
	// Namespaces first, each removed at the end even if the test fails;
	// removing a namespace removes its end of the veth, and with it the
	// other end.
	for _, ns := range []string{b.nsR, b.nsA} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := runErr("ip", "netns", "del", ns); err != nil {
				t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
			}
		})
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	if tun {
		// Made after the namespaces' cleanups, so closed before them.
		b.wire = newTunWire(t, [2]string{b.nsR, b.nsA}, [2]string{b.linkR, b.linkA})
	} else {
		// No segmentation offload: every packet crosses the veth as on a
		// wire, so a fault drops or delays packets, not 64 KiB GSO bursts.
		noGSO := []string{"gso_max_segs", "1", "gso_max_size", "1500"}
		argv := append([]string{"ip", "-n", b.nsR, "link", "add", b.linkR}, noGSO...)
		argv = append(argv, "type", "veth", "peer", "name", b.linkA)
		run(t, append(append(argv, noGSO...), "netns", b.nsA)...)
	}
	run(t, "ip", "-n", b.nsR, "addr", "add", netemRelayIP+"/24", "dev", b.linkR)
	run(t, "ip", "-n", b.nsA, "addr", "add", netemAgentIP+"/24", "dev", b.linkA)
	run(t, "ip", "-n", b.nsR, "link", "set", b.linkR, "up")
	run(t, "ip", "-n", b.nsA, "link", "set", b.linkA, "up")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	b.hosts = filepath.Join(etc, "hosts")
	b.writeHosts(netemRelayIP)
	b.inR, b.inA = nsClient(b.nsR), nsClient(b.nsA)

	dir := t.TempDir()
	b.dir = dir
	sim := simAddrs(t, start(t, dir, "ccusim", b.inNs(b.nsA, testbed.SimArgs(bins, "demo", b.files)...)...))

	var err error
	if b.hub, err = testbed.NewHub("demo", testbed.TunnelIP(0), filepath.Join(dir, "hub.key")); err != nil {
		t.Fatal(err)
	}
	if b.rb, err = testbed.NewRelay(&ports, dir, "relay", testbed.RelayOptions{UDP: transport == "udp"}, []testbed.Hub{b.hub}); err != nil {
		t.Fatal(err)
	}
	// The relay takes agents on every address of its namespace: the
	// "address" fault moves it.
	conf := readFileString(b.rb.Conf)
	conf = strings.Replace(conf, fmt.Sprintf("agent_listen = \"127.0.0.1:%d\"", b.rb.AgentPort), fmt.Sprintf("agent_listen = \"0.0.0.0:%d\"", b.rb.AgentPort), 1)
	conf = strings.Replace(conf, fmt.Sprintf("agent_listen_udp = \"127.0.0.1:%d\"", b.rb.UDPPort), fmt.Sprintf("agent_listen_udp = \"0.0.0.0:%d\"", b.rb.UDPPort), 1)
	writeFile(t, b.rb.Conf, conf)
	b.relay = start(t, dir, "relay", b.inNs(b.nsR, b.rb.Args(bins)...)...)
	poll.Until(t, 15*time.Second, "the relay to listen", func() bool {
		if !b.relay.alive() {
			t.Fatalf("relay exited: %v\n%s", b.relay.err, b.relay.logText())
		}
		return strings.Contains(b.relay.logText(), testbed.RelayReady)
	})

	b.relayAddr = net.JoinHostPort(netemRelayDNS, strconv.Itoa(b.rb.AgentPort))
	a, err := testbed.NewAgent(&ports, filepath.Join(dir, "hub.toml"), b.rb, b.hub, testbed.AgentSpec{
		UI:        uiAddrBeside(t, sim),
		Relay:     b.relayAddr,
		Transport: transport,
		Targets:   testbed.SimTargets(func(svc string) string { return sim[svc] }),
		// The relay's name comes from the namespace's hosts file; no
		// resolver outside is asked.
		Extra: "[dns]\nfallback = []\nsystem = [\"127.0.0.1:1\"]\ntimeout = \"200ms\"\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	b.ui = a.UI
	b.agent = start(t, dir, "agent", b.inNs(b.nsA, a.Args(bins)...)...)
	return b
}

// uiAddrBeside is a loopback address for the agent's status API that
// none of ccusim's services (sim) holds: ccusim in the agent's namespace
// takes ports the kernel picks there, which the test's own choice of a
// free port cannot see (CI once had the agent fail with "address already
// in use").
func uiAddrBeside(t *testing.T, sim map[string]string) string {
	t.Helper()
	for range 100 {
		p, err := ports.Free()
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		if !slices.Contains(slices.Collect(maps.Values(sim)), addr) {
			return addr
		}
	}
	t.Fatal("no port for the agent's status API beside ccusim's")
	return ""
}

// inNs is argv run inside namespace ns. ip netns exec execs argv in its
// own process, so the PID is the binary's.
func (b *faultBed) inNs(ns string, argv ...string) []string {
	return append([]string{"ip", "netns", "exec", ns}, argv...)
}

// writeHosts points the agent's relay name at ip. It rewrites the file in
// place: ip netns exec bound that very file over the agent's /etc/hosts.
func (b *faultBed) writeHosts(ip string) {
	b.t.Helper()
	content := fmt.Sprintf("127.0.0.1 localhost\n%s %s\n", ip, netemRelayDNS)
	f, err := os.OpenFile(b.hosts, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		b.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		b.t.Fatal(err)
	}
}

// qdisc adds (with args) or deletes the netem qdisc on both ends.
func (b *faultBed) qdisc(op string, args ...string) {
	b.t.Helper()
	for _, end := range [][2]string{{b.nsR, b.linkR}, {b.nsA, b.linkA}} {
		argv := append([]string{"ip", "netns", "exec", end[0], "tc", "qdisc", op, "dev", end[1], "root"}, "netem")
		if op == "add" {
			argv = append(argv, args...)
		}
		if op == "del" {
			argv = argv[:len(argv)-1]
		}
		run(b.t, argv...)
	}
}

// nftDrop drops the packets that leave either end of the veth and match
// expr ("" drops all: a blackhole).
func (b *faultBed) nftDrop(expr string) {
	b.t.Helper()
	for _, end := range [][2]string{{b.nsR, b.linkR}, {b.nsA, b.linkA}} {
		rules := fmt.Sprintf("table inet fault {\n chain out {\n  type filter hook output priority 0; policy accept;\n  oifname %q %s counter drop\n }\n}\n", end[1], expr)
		f := filepath.Join(b.t.TempDir(), "fault.nft")
		writeFile(b.t, f, rules)
		run(b.t, "ip", "netns", "exec", end[0], "nft", "-f", f)
	}
}

func (b *faultBed) nftFlush() {
	b.t.Helper()
	for _, ns := range []string{b.nsR, b.nsA} {
		// What the fault dropped, for the log: proof it bit.
		if n, ok := b.nftDropped(ns); ok {
			b.t.Logf("%s: nftables dropped %d packets", ns, n)
		}
		run(b.t, "ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "fault")
	}
}

// nftDropped reads the drop counter of nftDrop's rule in ns; false when
// there is no such rule (no nftables fault holds).
func (b *faultBed) nftDropped(ns string) (int, bool) {
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "fault").Output()
	i := strings.Index(string(out), "counter packets ")
	if err != nil || i < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(strings.Fields(string(out[i:]))[2])
	return n, err == nil
}

// senderDrops is nftDropped on the side that sends in a transfer: the
// agent's namespace in a download, the relay's in an upload.
func (b *faultBed) senderDrops(upload bool) (int, bool) {
	if upload {
		return b.nftDropped(b.nsR)
	}
	return b.nftDropped(b.nsA)
}

func (b *faultBed) setMTU(mtu int) {
	b.t.Helper()
	run(b.t, "ip", "-n", b.nsR, "link", "set", b.linkR, "mtu", strconv.Itoa(mtu))
	run(b.t, "ip", "-n", b.nsA, "link", "set", b.linkA, "mtu", strconv.Itoa(mtu))
}

// moveRelay gives the relay a new address and takes the old one away, and
// points the agent's name for it at the new one, as an operator moving the
// relay to another server (or a new IP) would.
func (b *faultBed) moveRelay() {
	b.t.Helper()
	b.relayConnected = strings.Count(b.relay.logText(), `msg="hub connected" hub=demo `)
	// Old first: deleting a subnet's primary address deletes its
	// secondaries too (without promote_secondaries).
	run(b.t, "ip", "-n", b.nsR, "addr", "del", netemRelayIP+"/24", "dev", b.linkR)
	run(b.t, "ip", "-n", b.nsR, "addr", "add", netemMovedIP+"/24", "dev", b.linkR)
	b.writeHosts(netemMovedIP)
}

// waitReconnected waits for the relay to log a new connection of the hub
// after moveRelay, and for the agent to say where the relay is now.
func (b *faultBed) waitReconnected(timeout time.Duration) {
	b.t.Helper()
	start := time.Now()
	poll.Until(b.t, timeout, "the agent to reach the relay at its new address", func() bool {
		if strings.Count(b.relay.logText(), `msg="hub connected" hub=demo `) <= b.relayConnected {
			return false
		}
		st, err := b.status()
		return err == nil && st.State == localapi.StateConnected && strings.Join(st.DNSAnswer, ",") == netemMovedIP
	})
	b.t.Logf("the agent found the moved relay after %v", time.Since(start).Round(time.Millisecond))
}

// nsClient is an HTTP client whose connections are made inside network
// namespace ns (to 127.0.0.1 at the URL's port, whatever host it names),
// one per request.
func nsClient(ns string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			var c net.Conn
			err = inNetns(ns, func() error {
				var d net.Dialer
				var err error
				c, err = d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
				return err
			})
			return c, err
		},
	}}
}

// inNetns runs f on an OS thread that entered network namespace ns, so
// the sockets f makes live there. The thread is never unlocked: it ends
// with its goroutine, and nothing else ever runs in ns.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(filepath.Join("/run/netns", ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

func (b *faultBed) status() (localapi.Status, error) {
	var st localapi.Status
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+b.ui+"/api/status", nil)
	resp, err := b.inA.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// resends reads the TCP resends and retransmission timeouts inside the
// tunnel of the side that sends in a transfer: the hub's (the agent's
// status) in a download, the relay's (its debug state) in an upload.
func (b *faultBed) resends(upload bool) (resent, timeouts uint64, err error) {
	if upload {
		st, err := b.relayState()
		return st.TunnelRetransmits, st.TunnelTimeouts, err
	}
	st, err := b.status()
	return st.TCPRetransmits, st.TCPTimeouts, err
}

func (b *faultBed) relayState() (relay.DebugState, error) {
	var st relay.DebugState
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+b.rb.DebugAddr+"/debug/state", nil)
	resp, err := b.inR.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (b *faultBed) waitConnected(timeout time.Duration) {
	b.t.Helper()
	poll.Until(b.t, timeout, "the agent to report state \"connected\"", func() bool {
		if !b.agent.alive() {
			b.t.Fatalf("agent exited: %v", b.agent.err)
		}
		st, err := b.status()
		return err == nil && st.State == localapi.StateConnected
	})
}

// fetch GETs the hub's WebUI through the relay, as a user with an app
// token, within timeout.
func (b *faultBed) fetch(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", b.rb.TokenURL("demo", 80, "/"), nil)
	resp, err := b.inR.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 || !strings.Contains(string(body), "HomeMatic WebUI") {
		return fmt.Errorf("status %d, body %.100q", resp.StatusCode, body)
	}
	return nil
}

func (b *faultBed) mustFetch(when string) {
	b.t.Helper()
	if err := b.fetch(30 * time.Second); err != nil {
		b.t.Fatalf("GET WebUI through the relay %s: %v", when, err)
	}
}

// mustFetchWithin retries the fetch until one works, for up to timeout: a
// fault may have cost the tunnel its connection.
func (b *faultBed) mustFetchWithin(when string, timeout time.Duration) {
	b.t.Helper()
	var last error
	defer func() {
		if b.t.Failed() {
			b.t.Logf("the last GET %s: %v", when, last)
		}
	}()
	poll.Until(b.t, timeout, "a GET of the WebUI through the relay to work "+when, func() bool {
		last = b.fetch(20 * time.Second)
		return last == nil
	})
}

// file returns the name of a random file of size in ccusim's folder and
// its SHA-256, making it once.
func (b *faultBed) file(size int64) (string, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	name := fmt.Sprintf("f%d.bin", size)
	if h, ok := b.downloads[size]; ok {
		return name, h
	}
	h := writeRandomFile(b.t, b.files, name, size)
	b.downloads[size] = h
	return name, h
}

// download fetches a file of size through the relay and checks every byte.
func (b *faultBed) download(size int64, timeout time.Duration) error {
	name, want := b.file(size)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", b.rb.TokenURL("demo", 80, "/files/"+name), nil)
	resp, err := b.inR.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET /files/%s: %s", name, resp.Status)
	}
	return checkBody(ctx, resp.Body, size, want, timeout)
}

// checkBody reads body to its end and checks its length and SHA-256; a
// body still coming when ctx's deadline (timeout) passed is reported hung.
func checkBody(ctx context.Context, body io.Reader, size int64, want string, timeout time.Duration) error {
	h := sha256.New()
	n, err := io.Copy(h, body)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("hung: %d of %d bytes after %v", n, size, timeout)
	}
	if err != nil {
		return fmt.Errorf("after %d of %d bytes: %w", n, size, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != size || got != want {
		return fmt.Errorf("%d bytes, sha256 %s; want %d, %s", n, got, size, want)
	}
	return nil
}

// upload sends a file of size through the relay to ccusim's POST /echo
// and checks every byte of the echo.
func (b *faultBed) upload(size int64, timeout time.Duration) error {
	name, want := b.file(size)
	f, err := os.Open(filepath.Join(b.files, name))
	if err != nil {
		return err
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", b.rb.TokenURL("demo", 80, "/echo"), f)
	req.ContentLength = size
	resp, err := b.inR.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("hung: no answer after %v", timeout)
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("POST /echo: %s", resp.Status)
	}
	if err := checkBody(ctx, resp.Body, size, want, timeout); err != nil {
		return fmt.Errorf("the echo: %w", err)
	}
	return nil
}

func (b *faultBed) mustDownload(size int64, timeout time.Duration) {
	b.t.Helper()
	b.mustTransfer(false, size, timeout)
}

// mustTransfer downloads size bytes through the relay, or uploads them
// (and gets them back), and fails the test if that fails.
func (b *faultBed) mustTransfer(upload bool, size int64, timeout time.Duration) {
	b.t.Helper()
	what, move := "download", b.download
	if upload {
		what, move = "upload (echoed)", b.upload
	}
	start := time.Now()
	if err := move(size, timeout); err != nil {
		b.t.Fatalf("%s of %d bytes through the relay: %v", what, size, err)
	}
	b.t.Logf("%s of %d KiB in %v", what, size>>10, time.Since(start).Round(time.Millisecond))
}

// startDownload starts a download and returns once its first bytes have
// arrived; its result comes on the channel. A download that hangs until
// its deadline is reported as such (a session that neither completed nor
// failed).
func (b *faultBed) startDownload(size int64, deadline time.Duration) chan error {
	name, want := b.file(size)
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", b.rb.TokenURL("demo", 80, "/files/"+name), nil)
		resp, err := b.inR.Do(req)
		if err != nil {
			close(started)
			done <- err
			return
		}
		defer resp.Body.Close()
		h := sha256.New()
		n, err := io.CopyN(h, resp.Body, 1<<20)
		close(started)
		if err == nil {
			var m int64
			m, err = io.Copy(h, resp.Body)
			n += m
		}
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			done <- fmt.Errorf("hung: %d of %d bytes when its %v deadline passed", n, size, deadline)
		case err != nil:
			done <- fmt.Errorf("after %d of %d bytes: %w", n, size, err)
		case n != size || hex.EncodeToString(h.Sum(nil)) != want:
			done <- fmt.Errorf("%d bytes with the wrong content", n)
		default:
			done <- nil
		}
	}()
	<-started
	return done
}

// usage is what a process holds: goroutines, open descriptors, resident
// memory.
type usage struct {
	agentG, agentFD, agentRSS int
	relayG, relayFD, relayRSS int
}

func (u usage) String() string {
	return fmt.Sprintf("agent %d goroutines, %d fds, %d MiB; relay %d goroutines, %d fds, %d MiB",
		u.agentG, u.agentFD, u.agentRSS>>10, u.relayG, u.relayFD, u.relayRSS>>10)
}

func (b *faultBed) usage() (usage, error) {
	var u usage
	st, err := b.status()
	if err != nil {
		return u, err
	}
	rs, err := b.relayState()
	if err != nil {
		return u, err
	}
	u.agentG, u.relayG = st.Goroutines, rs.Goroutines
	if u.agentFD, u.agentRSS, err = procUsage(b.agent.cmd.Process.Pid); err != nil {
		return u, err
	}
	u.relayFD, u.relayRSS, err = procUsage(b.relay.cmd.Process.Pid)
	return u, err
}

// procUsage counts pid's open descriptors and reads its resident memory
// (KiB) from /proc.
func procUsage(pid int) (fds, rssKiB int, err error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, 0, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			rssKiB, _ = strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
	return len(ents), rssKiB, nil
}

// describeFDs lists pid's open descriptors, one kind a line with its
// count: files by path, sockets by protocol, state and addresses (from
// /proc/PID/net, the process's own network namespace), so that a failed
// "back to where they were" says what stayed open.
func describeFDs(pid int) string {
	sockets := map[string]string{} // inode → description
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
		text, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, proto))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(text), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			// local, remote, state (hex: 01 established, 06 time-wait,
			// 08 close-wait, 0A listen, 07 UDP), inode.
			sockets[f[9]] = fmt.Sprintf("%s state %s local %s remote %s", proto, f[3], f[1], f[2])
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return err.Error()
	}
	count := map[string]int{}
	for _, e := range ents {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		if inode, ok := strings.CutPrefix(target, "socket:["); ok {
			inode = strings.TrimSuffix(inode, "]")
			if d, ok := sockets[inode]; ok {
				target = d
			} else {
				target = "socket (not TCP or UDP)"
			}
		} else if strings.HasPrefix(target, "pipe:[") {
			target = "pipe"
		}
		count[target]++
	}
	var lines []string
	for k, n := range count {
		lines = append(lines, fmt.Sprintf("  %3d %s", n, k))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// settledUsage is the usage once no session is open and two readings in a
// row agree on goroutines and descriptors: the baseline.
func (b *faultBed) settledUsage() usage {
	b.t.Helper()
	var prev, cur usage
	poll.Until(b.t, 30*time.Second, "goroutines and descriptors to settle before the fault", func() bool {
		var err error
		prev, cur = cur, usage{}
		if cur, err = b.usage(); err != nil {
			return false
		}
		st, err := b.status()
		return err == nil && st.SessionsActive == 0 &&
			cur.agentG == prev.agentG && cur.relayG == prev.relayG && cur.agentFD == prev.agentFD && cur.relayFD == prev.relayFD
	})
	return cur
}

// waitUsageBack waits until goroutines, descriptors and memory are back
// within the slack of before.
func (b *faultBed) waitUsageBack(before usage, timeout time.Duration) usage {
	b.t.Helper()
	var cur usage
	var err error
	defer func() {
		if b.t.Failed() {
			b.t.Logf("usage before the fault: %s\nusage at the end:       %s (err %v)", before, cur, err)
			b.t.Logf("the agent's descriptors at the end:\n%s", describeFDs(b.agent.cmd.Process.Pid))
			b.t.Logf("the relay's descriptors at the end:\n%s", describeFDs(b.relay.cmd.Process.Pid))
		}
	}()
	poll.Until(b.t, timeout, "goroutines, descriptors and memory to return to where they were", func() bool {
		if cur, err = b.usage(); err != nil {
			return false
		}
		return cur.agentG <= before.agentG+slackGoroutines && cur.relayG <= before.relayG+slackGoroutines &&
			cur.agentFD <= before.agentFD+slackFDs && cur.relayFD <= before.relayFD+slackFDs &&
			cur.agentRSS <= before.agentRSS+slackRSSKiB && cur.relayRSS <= before.relayRSS+slackRSSKiB
	})
	return cur
}
