package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/relay"
	"github.com/hubtunnel/hubtunnel/vpn"
)

// hubs measures the relay's memory with Options.Hubs connected idle hubs
// (a Fleet in a process of its own), against the same relay with no hubs
// and with the hubs configured but offline.
func (ru *run) hubs() error {
	n := ru.o.Hubs
	dir := filepath.Join(ru.o.Dir, "hubs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	settle := 3 * time.Second
	m0, err := ru.emptyRelayMem(dir, settle)
	if err != nil {
		return err
	}

	hubs := make([]Hub, n)
	keys := make([]vpn.PrivateKey, n)
	for i := range hubs {
		h, err := NewHub("", fmt.Sprintf("h%05d", i+1), fmt.Sprintf("100.100.%d.%d", i/250, i%250+1))
		if err != nil {
			return err
		}
		hubs[i], keys[i] = h, h.Key
	}
	rn, err := NewRelay(ru.o.Bins, ru.ports, dir, "relay-n", true, hubs)
	if err != nil {
		return err
	}
	// By default the relay gives the agent port 60 % of its descriptors
	// (11,846 of 20,000): this relay serves agents and nothing else.
	if err := prependConf(rn.Conf, fmt.Sprintf("limit_agent_conns = %d\nlimit_public_conns = 64\n", n+64)); err != nil {
		return err
	}
	tUp, mCfg, err := startCounted(rn, settle)
	if err != nil {
		return err
	}
	defer func() { rn.Proc.Stop() }()

	keyFile := filepath.Join(dir, "fleet.keys")
	if err := WriteKeys(keyFile, keys); err != nil {
		return err
	}
	t0 := time.Now()
	fleet, err := StartProc(dir, "fleet", nil, ru.o.Self, "fleet",
		"-relay", fmt.Sprintf("127.0.0.1:%d", rn.AgentPort), "-relay-key", rn.Key.Public().String(), "-keys", keyFile)
	if err != nil {
		return err
	}
	defer fleet.Stop()
	if err := fleet.WaitLog(fmt.Sprintf("fleet: %d hubs connected", n), 60*time.Second+time.Duration(n)*100*time.Millisecond); err != nil {
		return err
	}
	connected := func() int { return strings.Count(rn.Proc.Log(), `msg="hub connected" `) }
	if err := WaitFor(30*time.Second, fmt.Sprintf("the relay to log %d hubs connected", n), func() (bool, error) {
		return connected() >= n, nil
	}); err != nil {
		return fmt.Errorf("%w (it logged %d)", err, connected())
	}
	tAll := time.Since(t0)
	time.Sleep(5 * time.Second)
	mConn, err := rn.Proc.Mem()
	if err != nil {
		return err
	}
	time.Sleep(10 * time.Second)
	mLater, _ := rn.Proc.Mem()
	fleetMem, _ := fleet.Mem()
	heapConn := filepath.Join(os.TempDir(), "hubtunnel-relay-heap-connected.pb.gz") // kept: the run's dir is removed
	saveHeap(rn.DebugAddr, heapConn)

	// The relay keeps a hub's WireGuard peer only while it is active
	// (relay/peers.go): idle for 3.5 minutes, every peer goes.
	if err := waitQuietly(6*time.Minute, "the relay to remove the idle hubs' WireGuard peers", func() (bool, error) {
		st, err := relayDebugState(rn.DebugAddr)
		return err == nil && st.WireGuardPeers == 0, nil
	}); err != nil {
		return err
	}
	// The peers' memory is garbage only after two collections (their
	// queues are freed by a finalizer) and goes back to the OS after them:
	// the relay collects and returns it itself after a sweep that removed
	// many peers (relay/peers.go), and Go collects a quiet process every
	// 2 minutes. RSS is read once two more collections have run, the bench
	// forcing none.
	gcs := func() int { return len(gcLine.FindAllStringIndex(rn.Proc.Log(), -1)) }
	gc0 := gcs()
	mPeersGone, _ := rn.Proc.Mem()
	if err := waitQuietly(6*time.Minute, "the relay to run two garbage collections after its peers went", func() (bool, error) {
		return gcs() >= gc0+2, nil
	}); err != nil {
		return err
	}
	mIdle, err := rn.Proc.Mem()
	if err != nil {
		return err
	}
	msIdle, err := relayMemStats(rn.DebugAddr)
	if err != nil {
		return err
	}
	stIdle, _ := relayDebugState(rn.DebugAddr)
	heapIdle := filepath.Join(os.TempDir(), "hubtunnel-relay-heap-idle.pb.gz")
	saveHeap(rn.DebugAddr, heapIdle)
	drops := strings.Count(rn.Proc.Log(), `msg="hub disconnected" `)
	still := connected() - drops

	perHub := float64(mConn.RSS-m0.RSS) / float64(n)
	perCfg := float64(mCfg.RSS-m0.RSS) / float64(n)
	perConn := float64(mConn.RSS-mCfg.RSS) / float64(n)
	perIdle := float64(mIdle.RSS-m0.RSS) / float64(n)
	ru.r.add("hubs", "hubs connected to one relay (real WireGuard handshakes)", fmt.Sprintf("%d of %d in %s, %d still after 15 s", connected(), n, fmtSec(tAll), still),
		"1,000 now, 10,000 next", ptr(n >= 1000 && still >= n))
	ru.r.add("hubs", "relay RSS: no hubs / "+fmt.Sprint(n)+" configured, offline / connected, idle",
		fmt.Sprintf("%s / %s / %s", fmtMB(m0.RSS), fmtMB(mCfg.RSS), fmtMB(mConn.RSS)), "", nil)
	ru.r.add("hubs", "relay memory per hub, just connected (configured + connected)",
		fmt.Sprintf("%.1f KB (%.1f KB configured + %.1f KB connection)", perHub/1000, perCfg/1000, perConn/1000), "reported", nil)
	ru.r.add("hubs", "relay memory per idle hub (connected, WireGuard peer gone after 3.5 min idle, two collections later)",
		fmt.Sprintf("%.1f KB (RSS %s; %s as the last peer went)", perIdle/1000, fmtMB(mIdle.RSS), fmtMB(mPeersGone.RSS)), "≤ 16 KB", ptr(perIdle <= 16000))
	perN := func(v float64) string { return fmt.Sprintf("%.1f KB", v/float64(n)/1000) }
	ru.r.add("hubs", "where an idle hub's bytes are (Go's MemStats, per hub): heap in use / goroutine stacks / runtime's own / free, not yet returned",
		fmt.Sprintf("%s / %s / %s / %s (%d goroutines in all)", perN(msIdle["HeapInuse"]), perN(msIdle["Stack"]),
			perN(msIdle["MSpanSys"]+msIdle["MCacheSys"]+msIdle["BuckHashSys"]+msIdle["GCSys"]+msIdle["OtherSys"]),
			perN(msIdle["HeapIdle"]-msIdle["HeapReleased"]), stIdle.Goroutines), "reported", nil)
	if n < 10000 {
		ru.r.add("hubs", "relay RSS for 10,000 idle hubs, extrapolated linearly", fmtMB(m0.RSS+int64(perIdle*10000)), "", nil)
	}
	ru.r.section("Hubs on one relay", `The relay (hubrelay, UDP on as by default, public ports bound) is started three times: with no hubs;
with %d `+"`[[hub]]`"+` entries (generated keys, tunnel addresses 100.100.x.y) and none connected; and the same
relay with all %d connected. The hubs are a fleet in one other process (`+"`hubbench fleet`"+`): per hub its
own key, a real wireguard-go device (vpn.Device) and a real uplink.TCPBind with its own TCP connection,
Hello and handshake, exactly as the agent binary has, but no netstack and no port listeners: in their
place a minimal tun.Device that never produces a packet and discards what it is given (no user traffic
flows). The fleet starts them %d at a time and starts the next wave once each hub of this one has
completed its handshake, so that the relay's handshake queue stays short (wireguard-go asks for
cookies, rate-limited per source address, under load; all fleet hubs share 127.0.0.1).

"Connected" is counted in the relay's own log (msg="hub connected", written when the relay
has answered the hub's handshake on that connection). RSS is VmRSS from /proc/PID/status, 3 s after
start (no hubs, offline) and 5 s after the last hub connected; 10 s later it was %s (VmHWM %s),
with %d hubs still connected and %d disconnects logged. The relay took %s to start with %d hubs
configured. Memory per hub = (RSS connected − RSS with no hubs) / %d; the split into configured
and connection uses the offline run. The relay gives a hub a WireGuard peer only while it is active
(relay/peers.go); the idle row is RSS once the relay's debug state says no peer is left, all hubs still
connected, read once the relay's Go runtime has completed two more garbage collections (counted in its log:
GODEBUG=gctrace=1; polling its MemStats over HTTP made garbage of its own, which RSS counts): wireguard-go frees a removed peer's queues from a finalizer, so they
are garbage only after the second; the relay collects and hands memory back itself after a sweep that removed
many peers (relay/peers.go), and Go collects a quiet process every 2 minutes. Heap profiles of the relay at both points: %s and %s (`+"`go tool pprof -sample_index=inuse_space -top`"+`).
The fleet process itself held %s.`,
		n, n, 25, fmtMB(mLater.RSS), fmtMB(mLater.HWM), still, drops, fmtSec(tUp), n, n, heapConn, heapIdle, fmtMB(fleetMem.RSS))
	return nil
}

// emptyRelayMem is the memory of a relay with UDP on and no hubs, settle
// after its start: what the hubs phases count a hub's memory from.
func (ru *run) emptyRelayMem(dir string, settle time.Duration) (Mem, error) {
	r0, err := NewRelay(ru.o.Bins, ru.ports, dir, "relay-0", true, nil)
	if err != nil {
		return Mem{}, err
	}
	if err := r0.Start(); err != nil {
		return Mem{}, err
	}
	time.Sleep(settle)
	m0, err := r0.Proc.Mem()
	r0.Proc.Stop()
	return m0, err
}

// startCounted starts rn with its collections in its log and returns how
// long it took to start and its memory settle later; on an error it leaves
// no relay running. The relay writes a line to its log per garbage
// collection (gctrace), which the hubs phase counts: asking for its
// MemStats over HTTP every few seconds made more garbage in an idle relay
// than the relay itself, and RSS counts garbage until the next collection.
func startCounted(rn *Relay, settle time.Duration) (time.Duration, Mem, error) {
	tStart := time.Now()
	os.Setenv("GODEBUG", "gctrace=1")
	err := rn.Start()
	os.Unsetenv("GODEBUG")
	if err != nil {
		return 0, Mem{}, err
	}
	tUp := time.Since(tStart)
	time.Sleep(settle)
	m, err := rn.Proc.Mem()
	if err != nil {
		rn.Proc.Stop()
	}
	return tUp, m, err
}

// prependConf puts top-level keys in front of the TOML file at path, before
// its tables.
func prependConf(path, keys string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append([]byte(keys), b...), 0o600)
}

// gcLine is the line the Go runtime writes per collection with
// GODEBUG=gctrace=1: "gc 12 @3.456s 1%: …".
var gcLine = regexp.MustCompile(`(?m)^gc \d+ @`)

// waitQuietly is WaitFor for a relay whose memory is being measured: it
// asks every 5 s, not every 20 ms. Each question is an HTTP request to the
// relay, and at 50 a second their garbage (~140 KB/s) was most of what an
// idle relay allocated, and held a collection cycle's worth of it resident.
func waitQuietly(timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %v waiting for %s", errTimeout, timeout, what)
		}
		time.Sleep(5 * time.Second)
	}
}

// saveHeap writes the heap profile of the relay whose debug listener is at
// addr to path; a failure leaves no file and no error: the profile is an
// aid, not a result.
func saveHeap(addr, path string) { saveProfile(addr, "heap?gc=1", path) }

// saveProfile writes the relay's /debug/pprof/<which> to path, as saveHeap.
func saveProfile(addr, which, path string) {
	resp, err := http.Get("http://" + addr + "/debug/pprof/" + which)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return
	}
	os.WriteFile(path, b, 0o644)
}

// relayMemStats reads the Go runtime's MemStats of the relay whose debug
// listener is at addr, from the heap profile's text form (which, unlike
// ?gc=1, forces no collection): "# Name = value" lines, by name; "# Stack =
// inuse / sys" as Stack and StackSys.
func relayMemStats(addr string) (map[string]float64, error) {
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?debug=1")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	ms := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(strings.TrimPrefix(line, "# "), " = ")
		if !ok || !strings.HasPrefix(line, "# ") {
			continue
		}
		// "Stack = inuse / sys" (also MSpan, MCache): Stack and StackSys.
		f := strings.Fields(val)
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			ms[name] = v
		}
		if len(f) == 3 && f[1] == "/" {
			if v, err := strconv.ParseFloat(f[2], 64); err == nil {
				ms[name+"Sys"] = v
			}
		}
	}
	if _, ok := ms["NumGC"]; !ok {
		return nil, fmt.Errorf("no MemStats in the relay's heap profile")
	}
	return ms, nil
}

// relayDebugState reads GET /debug/state of the relay at addr.
func relayDebugState(addr string) (relay.DebugState, error) {
	var st relay.DebugState
	resp, err := http.Get("http://" + addr + "/debug/state")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}
