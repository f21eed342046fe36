package relay

import (
	"testing"

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
