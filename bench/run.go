package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/internal/loopback"
)

// Options of a run. Every field is set by the caller (cmd/hubbench has the
// defaults); a zero Hubs or Idle skips that phase.
type Options struct {
	Bins     Bins
	Root     string        // the module's root, for the size builds and the profile
	Dir      string        // a work folder for configs, keys, logs and captures
	Self     string        // this program, run as "Self fwd …" and "Self fleet …"
	Duration time.Duration // each throughput measurement
	Warmup   time.Duration // before each throughput measurement, not counted
	Calls    int           // XML-RPC calls timed per path
	Sessions int           // concurrent sessions through one hub
	Held     int           // sessions held open for the agent's memory; 0 skips it
	Hubs     int           // fleet size for the relay memory phase; 0 skips it
	UDPHubs  int           // idle UDP hubs for the udphubs phase; 0 skips it
	// UDPHubRate is how many of them start a second, all fleet
	// processes together; 0 is 400.
	UDPHubRate int
	// FleetProcHubs is how many hubs one fleet process may hold (a socket
	// each, within its file descriptor limit).
	FleetProcHubs int
	Idle          time.Duration // idle window of the wire-bytes phase; 0 skips idle and rekey
	Profile       string        // folder for pprof profiles; "" skips profiling
	Logf          logger.Logf

	// Phases are the phases to run (PhaseNames); nil runs them all.
	Phases   []string
	Rounds   int           // rounds of the peers phase
	PeerIdle time.Duration // idle window of the peers phase; 0 skips it
	PeerBins string        // folder with frps, frpc and chisel (scripts/bench-deps.sh builds them)
	// BaseBins, when set, are another build of hubtunnel (an earlier
	// commit's) that the peers phase measures beside Bins, interleaved in
	// the same rounds, as "hubtunnel tcp (base)" and "hubtunnel udp (base)".
	BaseBins *Bins
	// PeerGroups are the peers phase's groups to start (PeerGroupNames);
	// nil starts them all.
	PeerGroups []string
}

// PeerGroupNames are the groups of peers Options.PeerGroups can pick;
// "base" is started only with Options.BaseBins.
var PeerGroupNames = []string{"direct", "two-hop", "hubtunnel", "base", "frp", "chisel", "ssh"}

// startsPeers says whether the peers phase starts the peers of group.
func (o *Options) startsPeers(group string) bool {
	if group == "base" && o.BaseBins == nil {
		return false
	}
	return o.PeerGroups == nil || slices.Contains(o.PeerGroups, group)
}

// PhaseNames are the phases Options.Phases can pick.
var PhaseNames = []string{"size", "main", "access", "hubs", "udphubs", "profile", "bytes", "peers"}

func (o Options) want(phase string) bool { return o.Phases == nil || slices.Contains(o.Phases, phase) }

// run is one Run's state.
type run struct {
	o     Options
	r     *Report
	ports *loopback.Ports
	bulk  *BulkServer
	logf  logger.Logf
}

// Run measures everything and returns the report. Phases that fail leave a
// FAIL row with the reason and the run goes on.
func Run(o Options) (*Report, error) {
	ru := &run{o: o, r: &Report{Started: time.Now()}, ports: &loopback.Ports{}, logf: o.Logf}
	ru.logf = logger.OrDiscard(ru.logf)
	ru.r.Machine = Machine(o.Root)
	var err error
	if ru.bulk, err = NewBulkServer(); err != nil {
		return nil, err
	}
	defer ru.bulk.Close()

	// The wire-bytes phase idles for minutes; it runs beside the others
	// on its own relay and agent and is only counted on its own port.
	// Its setup is measured before anything else loads the machine.
	var wb *wireBytes
	if o.want("bytes") {
		wb = ru.startWireBytes()
	}

	if o.want("size") {
		ru.phase("size", ru.sizes)
	}
	if o.want("main") {
		ru.phase("main rig", ru.mainRig)
	}
	if o.want("access") {
		ru.phase("access", ru.access)
	}
	if o.Hubs > 0 && o.want("hubs") {
		ru.phase("hubs", ru.hubs)
	}
	if o.UDPHubs > 0 && o.want("udphubs") {
		ru.phase("udphubs", ru.udpHubs)
	}
	if o.Profile != "" && o.want("profile") {
		ru.phase("profile", ru.profile)
	}
	// The peers phase runs while the wire-bytes phase idles: that one
	// counts bytes on its own connection, which load does not change.
	if o.Rounds > 0 && o.want("peers") {
		ru.phase("peers", ru.peers)
	}
	if wb != nil {
		ru.logf("bench: waiting for the wire-bytes phase to finish its idle window")
		wb.finish()
	}
	ru.r.Took = time.Since(ru.r.Started)
	endNote := " (the run ends in the idle window, when the bench itself uses almost no CPU: a 1-minute load well above 0 there is other work on the machine)"
	if o.Rounds > 0 && o.want("peers") {
		endNote = " (the run may end with the peers phase's rounds, which load the machine themselves; the Peers section gives the load at its start)"
	}
	ru.r.Machine = append(ru.r.Machine, "load average at the end: "+LoadAvg()+endNote)
	ru.order()
	return ru.r, nil
}

// phase runs f and turns an error into a FAIL row.
func (ru *run) phase(name string, f func() error) {
	start := time.Now()
	ru.logf("bench: %s (load average %s)", name, LoadAvg())
	if err := f(); err != nil {
		ru.logf("bench: %s failed: %v", name, err)
		ru.r.add(name, "phase failed", "error: "+firstLine(err.Error()), "", ptr(false))
		ru.r.section("Error in phase "+name, "```\n%v\n```", err)
	}
	ru.logf("bench: %s took %v", name, time.Since(start).Round(time.Millisecond))
}

// groupOrder is the order of the table's groups.
var groupOrder = []string{"throughput", "latency", "access", "sessions", "memory", "hubs", "udp hubs", "wire bytes", "recovery", "size", "peers"}

func (ru *run) order() {
	rank := func(g string) int {
		if i := slices.Index(groupOrder, g); i >= 0 {
			return i
		}
		return len(groupOrder)
	}
	slices.SortStableFunc(ru.r.Rows, func(a, b Row) int { return rank(a.Group) - rank(b.Group) })
	order := []string{"Throughput", "Latency", "Concurrent sessions", "Memory", "Memory with sessions held", "Hubs on one relay", "UDP hubs on one relay", "Bytes on the agent's connection", "Recovery", "Size", "Profile", "Peers"}
	srank := func(t string) int {
		for i, o := range order {
			if strings.HasPrefix(t, o) {
				return i
			}
		}
		return len(order)
	}
	slices.SortStableFunc(ru.r.Sections, func(a, b Section) int { return srank(a.Title) - srank(b.Title) })
}

func (ru *run) sizes() error {
	dir := filepath.Join(ru.o.Dir, "sizes")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	sizes, err := BuildSizes(ru.o.Root, dir, []string{"hubtunnel", "hubrelay"}, Targets)
	if err != nil {
		return err
	}
	var tbl strings.Builder
	tbl.WriteString("| binary | target | stripped | gzip -9 |\n|---|---|---|---|\n")
	for _, s := range sizes {
		fmt.Fprintf(&tbl, "| %s | linux/%s | %d B (%s) | %s |\n", s.Binary, s.Target.Name, s.Bytes, fmtMB(s.Bytes), fmtMB(s.Gzip))
		if s.Binary != "hubtunnel" && s.Target.Name != "amd64" {
			continue
		}
		what := fmt.Sprintf("%s linux/%s, stripped", s.Binary, s.Target.Name)
		val := fmt.Sprintf("%s (gzip %s)", fmtMB(s.Bytes), fmtMB(s.Gzip))
		if s.Binary == "hubtunnel" && s.Target.Name == "armv7" {
			ru.r.add("size", what, val, "≤ 11 MB / gzip ≤ 4.5 MB", ptr(s.Bytes <= 11_000_000 && s.Gzip <= 4_500_000))
		} else {
			ru.r.add("size", what, val, "", nil)
		}
	}
	addon, err := AddonSize(ru.o.Root, dir, Targets)
	if err != nil {
		return err
	}
	ru.r.add("size", "addon package (hubtunnel-<version>.tgz, "+fmt.Sprint(len(Targets))+" architectures)", fmtMB(addon), "", nil)
	ru.r.section("Size", `Each binary is built as a release would build it: `+"`CGO_ENABLED=0 GOOS=linux GOARCH=… [GOARM=7|6] go build -trimpath [-tags …] -ldflags \"-s -w\"`"+` (the tags of `+"`cmd/NAME/build-tags`"+`)
(static, stripped, no version stamp). "gzip -9" is the binary compressed alone, about what it adds to
a .tgz, and what a hub downloads for a self-update. The addon package is `+"`scripts/addon.sh`"+` (what
`+"`make addon`"+` runs) around these agent binaries, one per architecture: what a hub owner uploads.
The budget (BRIEF.md, round 2: with the TLS transport and the panel included) is read in decimal
units: 11,000,000 bytes stripped and 4,500,000 bytes gzipped.

%s`, tbl.String())
	return nil
}

// mainRig runs the phases that share one relay with two hubs: "demo" on
// the TCP transport and "demoudp" on UDP, ccusim as the hub's services and
// the bench's BulkServer for bulk data.
func (ru *run) mainRig() error {
	dir := filepath.Join(ru.o.Dir, "main")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	sim, err := StartProc(dir, "ccusim", nil, ru.o.Bins.Ccusim, "-name", "demo", "-webui", "0", "-wired", "0", "-rf", "0", "-hmip", "0", "-script", "0")
	if err != nil {
		return err
	}
	defer sim.Stop()
	if err := sim.WaitLog("ccusim: script listening on", 10*time.Second); err != nil {
		return err
	}
	simAddr := func(svc string) string {
		for _, l := range strings.Split(sim.Log(), "\n") {
			if a, ok := strings.CutPrefix(l, "ccusim: "+svc+" listening on "); ok {
				return strings.TrimSpace(a)
			}
		}
		return ""
	}
	targets := map[int]string{80: ru.bulk.Addr(), 2000: simAddr("wired"), 2001: simAddr("rf"), 2010: simAddr("hmip"), 8181: simAddr("script")}

	hub, err := NewHub(dir, "demo", "100.96.0.2")
	if err != nil {
		return err
	}
	hubUDP, err := NewHub(dir, "demoudp", "100.96.0.3")
	if err != nil {
		return err
	}
	relay, err := NewRelay(ru.o.Bins, ru.ports, dir, "relay", true, []Hub{hub, hubUDP})
	if err != nil {
		return err
	}
	if err := relay.Start(); err != nil {
		return err
	}
	defer func() { relay.Proc.Stop() }()
	agent, err := NewAgent(ru.o.Bins, ru.ports, dir, relay, hub, AgentSpec{Targets: targets})
	if err != nil {
		return err
	}
	agentUDP, err := NewAgent(ru.o.Bins, ru.ports, dir, relay, hubUDP, AgentSpec{Transport: "udp", Targets: targets})
	if err != nil {
		return err
	}

	// Cold start, the first time: agent start → a request through the
	// tunnel succeeds.
	defer func() {
		if agent.Proc != nil {
			agent.Proc.Stop()
		}
	}()
	cold, err := coldStart(agent, relay.TokenURL("demo", 80, "/ping"))
	if err != nil {
		return err
	}
	if err := agentUDP.Start(); err != nil {
		return err
	}
	defer func() { agentUDP.Proc.Stop() }()
	if _, err := UntilOK(relay.TokenURL("demoudp", 80, "/ping"), agentUDP.Proc.Started, 30*time.Second); err != nil {
		return err
	}

	// Idle memory: connected, one request served, then 3 s of nothing.
	time.Sleep(3 * time.Second)
	idle, err := agent.Proc.Mem()
	if err != nil {
		return err
	}
	relayIdle, _ := relay.Proc.Mem()

	ru.phase("throughput", func() error { return ru.throughput(relay, agent, agentUDP) })
	time.Sleep(5 * time.Second)
	after, _ := agent.Proc.Mem()
	afterUDP, _ := agentUDP.Proc.Mem()
	relayAfter, _ := relay.Proc.Mem()
	ru.r.add("memory", "agent RSS idle (connected, after one request)", fmtMB(idle.RSS), "≤ 20 MB", ptr(idle.RSS <= 20e6))
	ru.r.add("memory", "agent RSS 5 s after the bulk transfers", fmtMB(after.RSS)+fmt.Sprintf(" (peak VmHWM %s)", fmtMB(after.HWM)), "", nil)
	ru.r.add("memory", "agent RSS 5 s after the bulk transfers, UDP transport", fmtMB(afterUDP.RSS)+fmt.Sprintf(" (peak VmHWM %s)", fmtMB(afterUDP.HWM)), "", nil)
	ru.r.add("memory", "relay RSS idle with 2 hubs connected", fmtMB(relayIdle.RSS), "", nil)
	ru.r.add("memory", "relay RSS 5 s after the bulk transfers (TCP and UDP hub)", fmtMB(relayAfter.RSS)+fmt.Sprintf(" (peak VmHWM %s)", fmtMB(relayAfter.HWM)), "bounded", nil)

	ru.phase("latency", func() error { return ru.latency(simAddr("rf"), relay) })
	ru.phase("sessions", func() error { return ru.sessions(relay, agent) })
	ru.phase("recovery", func() error { return ru.recovery(relay, agent, cold) })
	agentUDP.Proc.Stop()
	if ru.o.Held > 0 {
		ru.phase("held sessions", func() error { return ru.held(relay, agent) })
	}
	return nil
}

type path struct {
	name string
	addr string
	host string
	auth string // the Authorization header; "" for none
}

func (ru *run) throughput(relay *Relay, agent, agentUDP *Agent) error {
	// The two-hop plain TCP relay: hop A stands where the relay is, hop
	// B where the agent is, each a separate process.
	fwdB, err := ru.forwarder("fwd-b", ru.bulk.Addr())
	if err != nil {
		return err
	}
	defer fwdB.proc.Stop()
	fwdA, err := ru.forwarder("fwd-a", fwdB.addr)
	if err != nil {
		return err
	}
	defer fwdA.proc.Stop()

	paths := []path{
		{"direct loopback", ru.bulk.Addr(), "", ""},
		{"two-hop plain TCP relay", fwdA.addr, "", ""},
		{"full path, TCP transport", relay.Public(80), "demo.localhost", relay.AuthHeader("demo")},
		{"full path, UDP transport", relay.Public(80), "demoudp.localhost", relay.AuthHeader("demoudp")},
	}
	cases := []struct {
		streams int
		dir     Direction
	}{{1, Download}, {8, Download}, {1, Upload}}
	var (
		peakAgent, peakAgentUDP, peakRelay int64
		peakRelayUDP                       int64
		detail                             strings.Builder
	)
	for _, c := range cases {
		res := map[string]float64{}
		for _, p := range paths {
			var sample func()
			switch {
			case p.host == "demo.localhost":
				sample = func() {
					if m, err := agent.Proc.Mem(); err == nil {
						peakAgent = max(peakAgent, m.RSS)
					}
					if m, err := relay.Proc.Mem(); err == nil {
						peakRelay = max(peakRelay, m.RSS)
					}
				}
			case p.host == "demoudp.localhost":
				sample = func() {
					if m, err := agentUDP.Proc.Mem(); err == nil {
						peakAgentUDP = max(peakAgentUDP, m.RSS)
					}
					if m, err := relay.Proc.Mem(); err == nil {
						peakRelayUDP = max(peakRelayUDP, m.RSS)
					}
				}
			}
			t := Transfer{Addr: p.addr, Host: p.host, Auth: p.auth, Streams: c.streams, Dir: c.dir, Warmup: ru.o.Warmup, Duration: ru.o.Duration, Server: ru.bulk}
			out, err := t.Run(sample)
			if err != nil {
				return fmt.Errorf("%s, %d streams, %s: %w", p.name, c.streams, c.dir, err)
			}
			res[p.name] = out.Mbps()
			fmt.Fprintf(&detail, "| %d × %s | %s | %d B in %s | %.0f Mbit/s |\n", c.streams, c.dir, p.name, out.Bytes, fmtSec(out.Elapsed), out.Mbps())
			ru.logf("bench:   %d×%s %s: %.0f Mbit/s", c.streams, c.dir, p.name, out.Mbps())
		}
		label := fmt.Sprintf("%d stream", c.streams)
		if c.streams > 1 {
			label += "s"
		}
		label += " " + c.dir.String()
		direct, hop := res[paths[0].name], res[paths[1].name]
		ru.r.add("throughput", label+": direct loopback", fmt.Sprintf("%.0f Mbit/s", direct), "", nil)
		ru.r.add("throughput", label+": two-hop plain TCP relay", fmt.Sprintf("%.0f Mbit/s (%.2f× direct)", hop, hop/direct), "", nil)
		for _, p := range paths[2:] {
			v := res[p.name]
			ru.r.add("throughput", label+": "+p.name, fmt.Sprintf("%.0f Mbit/s (%.3f× direct, %.2f× two-hop)", v, v/direct, v/hop), "≥ 600 Mbit/s", ptr(v >= 600))
		}
	}
	ru.r.add("memory", "agent RSS under load, TCP transport (max during its transfers)", fmtMB(peakAgent), "≤ 48 MB", ptr(peakAgent > 0 && peakAgent <= 48e6))
	ru.r.add("memory", "agent RSS under load, UDP transport (max during its transfers)", fmtMB(peakAgentUDP), "≤ 48 MB", ptr(peakAgentUDP > 0 && peakAgentUDP <= 48e6))
	ru.r.add("memory", "relay RSS under load (max during the TCP agent's transfers)", fmtMB(peakRelay), "", nil)
	ru.r.add("memory", "relay RSS under load (max during the UDP agent's transfers)", fmtMB(peakRelayUDP), "", nil)
	ru.r.section("Throughput", `One bulk transfer, server → client ("download") or client → server ("upload"), on four paths, measured
back to back in the same run for each case:

- **direct loopback**: the client connects straight to the bench's bulk server.
- **two-hop plain TCP relay**: client → forwarder A → forwarder B → server; A and B are separate
  processes (`+"`hubbench fwd`"+`), a new A→B connection per client connection, copying through a 32 KiB
  buffer with plain read/write (like socat; no splice), unencrypted. The same shape as the full path.
- **full path, TCP transport**: client → hubrelay public port 80 (`+"`Host: demo.localhost`"+`, the hub's app
  token as HTTP Basic credentials) → relay netstack → WireGuard → the agent's one TCP connection →
  hubtunnel → agent netstack → portmap → server.
- **full path, UDP transport**: the same with a second agent (`+"`transport = \"udp\"`"+`) that reaches
  the relay's `+"`agent_listen_udp`"+` on loopback.

The server is the bench's bulk server (in the hubbench process): after an HTTP request head (the relay
routes by Host and lets the app token in) it writes zeros in 64 KiB writes until the client closes, or
counts an upload.
Each stream is one TCP connection. %s of warm-up are discarded, then bytes are counted over %s
(at the client for downloads, at the server for uploads); Mbit/s = 10⁶ bit/s of payload. The client
and the server share the hubbench process; relay, agent, forwarders and ccusim are their own
processes, all on the same 2 cores, so every path pays for its client and server too. During each
full-path transfer its agent's VmRSS and the relay's is read every 100 ms
of the measured time; "under load" in the memory rows is the largest value read.

| case | path | moved | rate |
|---|---|---|---|
%s`, ru.o.Warmup, ru.o.Duration, detail.String())
	return nil
}

type forwarder struct {
	proc *Proc
	addr string
}

func (ru *run) forwarder(name, to string) (*forwarder, error) {
	port, err := ru.ports.Free()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := StartProc(ru.o.Dir, name, nil, ru.o.Self, "fwd", "-listen", addr, "-to", to)
	if err != nil {
		return nil, err
	}
	if err := p.WaitLog("fwd: listening", 10*time.Second); err != nil {
		p.Kill()
		return nil, err
	}
	return &forwarder{p, addr}, nil
}

func (ru *run) latency(rfAddr string, relay *Relay) error {
	direct := "http://" + rfAddr + "/"
	tunnel := relay.TokenURL("demo", 2001, "/")
	ld, lt, err := CompareLatency(direct, tunnel, ru.o.Calls, 100)
	if err != nil {
		return err
	}
	d50, d99 := ld.Quantile(0.5), ld.Quantile(0.99)
	t50, t99 := lt.Quantile(0.5), lt.Quantile(0.99)
	ru.r.add("latency", "XML-RPC getValue, direct: p50 / p99", fmtMs(d50)+" / "+fmtMs(d99), "", nil)
	ru.r.add("latency", "XML-RPC getValue, full path: p50 / p99", fmtMs(t50)+" / "+fmtMs(t99), "", nil)
	ru.r.add("latency", "added by the full path: p50", fmtMs(t50-d50), "≤ 0.5 ms", ptr(t50-d50 <= 500*time.Microsecond))
	ru.r.add("latency", "added by the full path: p99", fmtMs(t99-d99), "≤ 3 ms", ptr(t99-d99 <= 3*time.Millisecond))
	ru.r.section("Latency", `%d XML-RPC calls `+"`getValue(\"NEQ0000002:1\", \"STATE\")`"+` to ccusim's BidCos-RF port, timed one by one
in the client (Go's net/http with ccusim.Call: request written → response decoded), on each of two
kept-alive connections: one straight to ccusim, one through the relay's port 2001+offset
(`+"`Host: demo.localhost`"+`, the hub's app token as HTTP Basic credentials) and the tunnel. The two alternate in blocks of 100 calls; 100 calls each
before that are not timed. Quantiles by nearest rank; "added" is full-path quantile minus direct quantile.
Min / max: direct %s / %s, full path %s / %s.`, ru.o.Calls, fmtMs(ld.Quantile(0)), fmtMs(ld.Quantile(1)), fmtMs(lt.Quantile(0)), fmtMs(lt.Quantile(1)))
	return nil
}

func (ru *run) sessions(relay *Relay, agent *Agent) error {
	n := ru.o.Sessions
	var relayHeld int64
	s := Concurrent(relay.TokenURL("demo", 2001, "/"), n, func() (int, error) {
		if m, err := relay.Proc.Mem(); err == nil {
			relayHeld = m.RSS
		}
		st, err := agent.Status()
		return st.SessionsActive, err
	})
	ru.r.add("memory", fmt.Sprintf("relay RSS with %d sessions held open through one hub", n), fmtMB(relayHeld), "bounded", nil)
	val := fmt.Sprintf("%d opened, %d errors, agent saw %d at once", s.Opened, s.Errors, s.PeakActive)
	ru.r.add("sessions", fmt.Sprintf("%d concurrent XML-RPC sessions through one hub", n), val, "≥ 200 without an error",
		ptr(n >= 200 && s.Errors == 0 && s.Opened == n))
	errText := "none"
	if s.FirstErr != nil {
		errText = s.FirstErr.Error()
	}
	ru.r.section("Concurrent sessions", `%d clients, each with its own kept-alive connection through the relay's port 2001+offset, make one
getValue call each, all at once; while every connection is still open the agent's status API is read
(`+"`sessions_active`"+`), then every client makes a second call on its open connection, all at once.
A session counts as opened when its first call succeeded. First error: %s.`, n, errText)
	return nil
}

// coldStart starts the agent and measures the time from its start until
// the status API says "connected" and until a request through the tunnel
// succeeds, both at once.
func coldStart(agent *Agent, ping string) (coldTimes, error) {
	if err := agent.Start(); err != nil {
		return coldTimes{}, err
	}
	connected := make(chan error, 1)
	var c coldTimes
	go func() {
		err := agent.WaitConnected(30 * time.Second)
		c.connected = time.Since(agent.Proc.Started)
		connected <- err
	}()
	ok, err := UntilOK(ping, agent.Proc.Started, 30*time.Second)
	if cerr := <-connected; err == nil {
		err = cerr
	}
	c.ok = ok
	return c, err
}

type coldTimes struct{ connected, ok time.Duration }

// handshakeGap is how long after the agent's last handshake the bench
// starts it again for a cold start. WireGuard refuses an initiation that
// comes within 20 ms of the last one it accepted from the same peer
// (wireguard-go's handshake flood limit, 50 per second), and the agent has
// just reconnected to the restarted relay: started at once, the new process
// is refused and retries 5 s later. No hub restarts that fast.
const handshakeGap = 25 * time.Millisecond

func (ru *run) recovery(relay *Relay, agent *Agent, firstCold coldTimes) error {
	ping := relay.TokenURL("demo", 80, "/ping")
	pingUDP := relay.TokenURL("demoudp", 80, "/ping")
	const reps = 3
	var kill, term, killUDP, termUDP, cold []time.Duration
	var listen []time.Duration
	// both waits for the TCP hub and the UDP hub at once, from t0.
	both := func(t0 time.Time, after string) (tcp, udp time.Duration, err error) {
		var udpErr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			// An idle UDP hub the killed relay had not kept
			// (keepUDPSessions) waits for its next keepalive (25 s)
			// to be asked to handshake again.
			udp, udpErr = UntilOK(pingUDP, t0, 60*time.Second)
		}()
		tcp, err = UntilOK(ping, t0, 30*time.Second)
		<-done
		if err == nil {
			err = udpErr
		}
		if err != nil {
			err = fmt.Errorf("after a relay %s: %w", after, err)
		}
		return tcp, udp, err
	}
	for range reps {
		t0 := time.Now()
		relay.Proc.Kill()
		if err := relay.Start(); err != nil {
			return err
		}
		listen = append(listen, time.Since(t0))
		d, du, err := both(t0, "SIGKILL")
		if err != nil {
			return err
		}
		kill, killUDP = append(kill, d), append(killUDP, du)
	}
	for range reps {
		t0 := time.Now()
		relay.Proc.Signal(syscall.SIGTERM)
		if err := relay.Proc.Wait(10 * time.Second); err != nil {
			return err
		}
		if err := relay.Start(); err != nil {
			return err
		}
		d, du, err := both(t0, "SIGTERM")
		if err != nil {
			return err
		}
		term, termUDP = append(term, d), append(termUDP, du)
	}
	cold = append(cold, firstCold.ok)
	coldConn := []time.Duration{firstCold.connected}
	for range reps - 1 {
		st, err := agent.Status()
		if err != nil {
			return err
		}
		agent.Proc.Stop()
		time.Sleep(time.Until(st.LastHandshake.Add(handshakeGap)))
		c, err := coldStart(agent, ping)
		if err != nil {
			return fmt.Errorf("agent cold start: %w", err)
		}
		cold = append(cold, c.ok)
		coldConn = append(coldConn, c.connected)
	}
	worst := slices.Max(kill)
	ru.r.add("recovery", "relay restart (SIGKILL + start) → request OK: median / max of 3", fmtSec(median(kill))+" / "+fmtSec(worst), "≤ 3 s", ptr(worst <= 3*time.Second))
	ru.r.add("recovery", "relay restart (SIGTERM + start) → request OK: median / max of 3", fmtSec(median(term))+" / "+fmtSec(slices.Max(term)), "≤ 3 s", ptr(slices.Max(term) <= 3*time.Second))
	ru.r.add("recovery", "UDP hub: relay restart (SIGKILL + start) → request OK: median / max of 3", fmtSec(median(killUDP))+" / "+fmtSec(slices.Max(killUDP)), "≤ 3 s", ptr(slices.Max(killUDP) <= 3*time.Second))
	ru.r.add("recovery", "UDP hub: relay restart (SIGTERM + start) → request OK: median / max of 3", fmtSec(median(termUDP))+" / "+fmtSec(slices.Max(termUDP)), "≤ 3 s", ptr(slices.Max(termUDP) <= 3*time.Second))
	ru.r.add("recovery", "agent cold start → status \"connected\": median / max of 3", fmtSec(median(coldConn))+" / "+fmtSec(slices.Max(coldConn)), "", nil)
	ru.r.add("recovery", "agent cold start → request OK: median / max of 3", fmtSec(median(cold))+" / "+fmtSec(slices.Max(cold)), "", nil)
	ru.r.section("Recovery", `**Relay restart**: with the agent connected, the relay process gets SIGKILL (or SIGTERM, which sends every
agent a GoingAway asking it to wait 1 s plus jitter) and a new relay process starts at once with the same
config and key (waiting for its "agents connect to" line took %s, %s, %s after the SIGKILL). The clock
starts at the signal and stops when a request `+"`GET /ping`"+` through the relay's port 80 and the tunnel,
repeated every 10 ms on a new connection, is answered 200 by the bulk server behind the agent.
SIGKILL: %s; SIGTERM: %s. The UDP hub (its own agent, transport "udp"), timed the same way at the same
time: SIGKILL: %s; SIGTERM: %s. A UDP hub has no connection that ends with the relay: after SIGTERM the
old relay leaves its UDP sessions in a file and the new one asks those hubs to handshake as it starts;
after SIGKILL the new relay asks the hubs whose sessions the killed one kept (0.1 s after each handshake);
one it did not keep is asked when its next keepalive (every 25 s) meets the new relay.

**Cold start**: the clock starts when the hubtunnel process is started (config and key exist) and stops
when its status API first says "connected" (%s), and, polled at the same time, when the same request
succeeds (%s); the first of each is the agent's first start of the run. The later two start at least
%s after the previous agent's last handshake: WireGuard refuses an initiation within 20 ms of the
last one from the same peer (its handshake flood limit), and one started at once, just after the
previous process reconnected, waits for the 5 s retry.`,
		fmtSec(listen[0]), fmtSec(listen[1]), fmtSec(listen[2]), fmtList(kill), fmtList(term), fmtList(killUDP), fmtList(termUDP), fmtList(coldConn), fmtList(cold), handshakeGap)
	return nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func fmtList(d []time.Duration) string {
	var s []string
	for _, x := range d {
		s = append(s, fmtSec(x))
	}
	return strings.Join(s, ", ")
}
