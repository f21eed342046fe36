package relay

import (
	"encoding/binary"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/hubtunnel/hubtunnel/internal/promtext"
)

// withMetrics is a config change that opens the metrics listener on a
// port of the system's choice.
func withMetrics(change func(*Config)) func(*Config) {
	return func(c *Config) {
		c.MetricsListen = "127.0.0.1:0"
		if change != nil {
			change(c)
		}
	}
}

// scrape reads s's /metrics with the Prometheus text parser: each sample
// as name, or name{label=value} for a labelled one, → value.
func scrape(t *testing.T, s *Server) map[string]float64 {
	t.Helper()
	m, err := promtext.Scrape(s.MetricsAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// wantMetrics fails the test for each sample in want that s's metrics do
// not show with that value.
func wantMetrics(t *testing.T, s *Server, want map[string]float64) {
	t.Helper()
	got := scrape(t, s)
	for k, v := range want {
		if n, ok := got[k]; !ok || n != v {
			t.Errorf("metric %s = %v (present: %v), want %v", k, n, ok, v)
		}
	}
}

// Every limit a refusal can come from is a series of
// hubrelay_limit_refusals_total from the start (at 0), so a dashboard or
// an alert sees it before its first refusal.
func TestEveryLimitHasItsSeries(t *testing.T) {
	tr := startTestRelayWith(t, false, withMetrics(nil), "a")
	want := map[string]float64{}
	for _, k := range []string{"limit_conns_per_address", "limit_requests_per_second", "limit_sessions_per_hub",
		"limit_public_conns", "limit_agent_conns", "limit_agent_prehello_per_address", "enroll_attempts"} {
		want["hubrelay_limit_refusals_total{limit="+k+"}"] = 0
	}
	want["hubrelay_limit_evictions_total{listener=public}"] = 0
	want["hubrelay_limit_evictions_total{listener=agent}"] = 0
	want["hubrelay_login_failures_total"] = 0
	wantMetrics(t, tr.Server, want)
}

// TestUDPHandshakesCounted: a UDP hub's handshakes count in
// hubrelay_handshake_initiations_total{transport=udp}, not in tcp's.
func TestUDPHandshakesCounted(t *testing.T) {
	tr := startTestRelayWith(t, true, withMetrics(nil), "a")
	startUDPAgent(t, tr, tr.keys["a"], "100.96.0.2").waitOnline(t, tr, "a")
	m := scrape(t, tr.Server)
	if m["hubrelay_handshake_initiations_total{transport=udp}"] < 1 || m["hubrelay_handshake_initiations_total{transport=tcp}"] != 0 {
		t.Errorf("handshakes after a UDP hub came online: udp %v, tcp %v; want at least 1 and 0",
			m["hubrelay_handshake_initiations_total{transport=udp}"], m["hubrelay_handshake_initiations_total{transport=tcp}"])
	}
	if m["hubrelay_hubs_online{transport=udp}"] != 1 {
		t.Errorf("hubs online over UDP: %v, want 1", m["hubrelay_hubs_online{transport=udp}"])
	}
}

// TestUDPWindowDropsCounted: a UDP hub's data packets dropped for a full
// window count in hubrelay_udp_window_drops_total, and the hub is served
// once the window forgets what it held.
func TestUDPWindowDropsCounted(t *testing.T) {
	tr := startTestRelayWith(t, true, withMetrics(nil), "a")
	startUDPAgent(t, tr, tr.keys["a"], "100.96.0.2").waitOnline(t, tr, "a")
	wantMetrics(t, tr.Server, map[string]float64{"hubrelay_udp_window_drops_total": 0})
	// As if WireGuard held a window's worth of the hub's packets.
	tr.hubs.name("a").inbound.Enter(maxInboundPerUDPHub)
	if got, err := tr.get("a"); got != 200 {
		t.Fatalf("hub a behind a full window: %d %v", got, err)
	}
	m := scrape(t, tr.Server)
	if n := m["hubrelay_udp_window_drops_total"]; n < 1 || int64(n) != tr.metrics.udpWindowDrops.Load() {
		t.Errorf("hubrelay_udp_window_drops_total %v after the hub's packets met a full window (counted %d); want at least 1, the count",
			n, tr.metrics.udpWindowDrops.Load())
	}
}

// TestTunnelRetransmitsCounted: a request whose packet to the hub is lost
// is repaired by the relay's TCP (a retransmission timeout: the relay's
// stack recovers without RACK, relay.go stackConfig), and
// hubrelay_tunnel_tcp_retransmits_total and _timeouts_total say so, as
// debug_listen's state does.
func TestTunnelRetransmitsCounted(t *testing.T) {
	tr := startTestRelayWith(t, true, withMetrics(func(c *Config) { c.DebugListen = "127.0.0.1:0" }), "a")
	var lose atomic.Bool
	var lost atomic.Int64
	wrap := func(d tun.Device) tun.Device {
		return &lossyTUN{Device: d, drop: func(p []byte) bool {
			if hasTCPData(p) && lose.CompareAndSwap(true, false) {
				lost.Add(1)
				return true
			}
			return false
		}}
	}
	startUDPAgentWrapped(t, tr, tr.keys["a"], "100.96.0.2", testHub("100.96.0.2"), wrap).waitOnline(t, tr, "a")
	wantMetrics(t, tr.Server, map[string]float64{"hubrelay_tunnel_tcp_retransmits_total": 0, "hubrelay_tunnel_tcp_timeouts_total": 0})

	lose.Store(true)
	if code, err := tr.get("a"); code != 200 {
		t.Fatalf("hub a, its request's first packet lost: %d %v", code, err)
	}
	if lost.Load() != 1 {
		t.Fatalf("%d packets lost, want 1", lost.Load())
	}
	// Nothing is in flight now: the counters hold still.
	m := scrape(t, tr.Server)
	st := tr.stack.Stats()
	retx, timeouts := m["hubrelay_tunnel_tcp_retransmits_total"], m["hubrelay_tunnel_tcp_timeouts_total"]
	if retx < 1 || uint64(retx) != st.Retransmits || uint64(timeouts) != st.Timeouts {
		t.Errorf("after a lost packet to the hub: retransmits %v, timeouts %v; want at least 1 retransmit, and the stack's %d and %d",
			retx, timeouts, st.Retransmits, st.Timeouts)
	}
	ds := debugState(t, tr.Server)
	if ds.TunnelRetransmits < uint64(retx) || ds.TunnelTimeouts < uint64(timeouts) {
		t.Errorf("debug state: retransmits %d, timeouts %d; the metrics said %v and %v", ds.TunnelRetransmits, ds.TunnelTimeouts, retx, timeouts)
	}
}

// lossyTUN drops the packets written to it (WireGuard's, from the relay)
// that drop reports true for.
type lossyTUN struct {
	tun.Device
	drop func([]byte) bool
}

func (d *lossyTUN) Write(bufs [][]byte, offset int) (int, error) {
	kept := bufs[:0:0]
	for _, b := range bufs {
		if !d.drop(b[offset:]) {
			kept = append(kept, b)
		}
	}
	if len(kept) > 0 {
		if _, err := d.Device.Write(kept, offset); err != nil {
			return 0, err
		}
	}
	return len(bufs), nil
}

// hasTCPData reports whether p is an IPv4 TCP segment that carries data.
func hasTCPData(p []byte) bool {
	if len(p) < 40 || p[0]>>4 != 4 || p[9] != 6 {
		return false
	}
	ihl := int(p[0]&0xf) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	return len(p) >= ihl+20 && total > ihl+int(p[ihl+12]>>4)*4
}

// debugState is what s's debug listener answers.
func debugState(t *testing.T, s *Server) DebugState {
	t.Helper()
	resp, err := http.Get("http://" + s.DebugAddr().String() + "/debug/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st DebugState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}
