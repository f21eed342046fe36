package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the relay's counters, plain atomics bumped where the relay
// already counts (the audit records, the limits, the agent connections)
// and read by a collector at scrape time. No label carries a hub's or a
// user's name: a relay serves thousands of hubs.
type metrics struct {
	sessionsStarted atomic.Int64 // session records begun (audit.go)
	sessionsEnded   atomic.Int64
	requests        atomic.Int64
	bytesUp         atomic.Int64 // user → hub, counted when a session record ends
	bytesDown       atomic.Int64
	handshakes      atomic.Int64 // WireGuard handshake initiations from TCP/TLS agents
	handshakesUDP   atomic.Int64 // from UDP hubs: those that decrypt, for a hub served (bind.go)
	loginFailures   atomic.Int64
	// Refusals by a limit (limits.go), by the config key that sets it;
	// the connection gates count their own.
	limitConnsPerAddr   atomic.Int64 // limit_conns_per_address
	limitRequests       atomic.Int64 // limit_requests_per_second
	limitSessionsPerHub atomic.Int64 // limit_sessions_per_hub
	limitEnroll         atomic.Int64 // enrollment attempts per address
	enrollments         atomic.Int64 // hubs enrolled with a code
	enrollRefused       atomic.Int64
	peersRefused        atomic.Int64 // hubs given no WireGuard peer: the device was full (peers.go)
	udpWindowDrops      atomic.Int64 // UDP hubs' data packets dropped for a full window (bind.go)
	agentTCP            atomic.Int64 // agent connections proven, by transport
	agentTLS            atomic.Int64
}

// event counts what an audit record tells: called for every record.
func (m *metrics) event(e store.Event) {
	switch e.Kind {
	case store.KindSession:
		m.sessionsEnded.Add(1)
		m.requests.Add(int64(e.Requests))
		m.bytesUp.Add(e.BytesUp)
		m.bytesDown.Add(e.BytesDown)
	case store.KindLogin:
		if e.Outcome == "failed" {
			m.loginFailures.Add(1)
		}
	case store.KindEnroll:
		switch {
		case e.Outcome == "ok" && e.Hub != "" && e.User == "":
			m.enrollments.Add(1)
		case e.Outcome == "refused":
			m.enrollRefused.Add(1)
		}
	}
}

// agentConnected counts a proven agent connection.
func (m *metrics) agentConnected(transport string) {
	if transport == "tls" {
		m.agentTLS.Add(1)
	} else {
		m.agentTCP.Add(1)
	}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("hubrelay_"+name, help, labels, nil)
}

var (
	descHubs           = desc("hubs", "Hubs the relay serves (enabled in the store).")
	descHubsOnline     = desc("hubs_online", "Hubs online now, by transport.", "transport")
	descSessionsOpen   = desc("sessions_open", "User sessions (one user's use of one hub's port over one connection) open now.")
	descSessions       = desc("sessions_total", "User sessions ended.")
	descRequests       = desc("requests_total", "Requests forwarded to hubs, counted when their session ends.")
	descBytes          = desc("bytes_total", "Bytes between users and hubs, counted when a session ends; direction up is user to hub.", "direction")
	descHandshakes     = desc("handshake_initiations_total", "WireGuard handshake initiations received from agents, by transport: tcp (frames over TCP or TLS), udp (plain WireGuard; only those for a hub the relay serves).", "transport")
	descLoginFailures  = desc("login_failures_total", "Failed logins at the portal.")
	descLimitHits      = desc("limit_refusals_total", "Requests and connections refused by a limit, by the config key that sets it.", "limit")
	descLimitEvictions = desc("limit_evictions_total", "Idle connections closed to make room for new ones at limit_public_conns or limit_agent_conns, by listener.", "listener")
	descEnrollments    = desc("enrollments_total", "Hub enrollments with a code, by outcome.", "outcome")
	descAgentConns     = desc("agent_connections_total", "Agent connections proven by a WireGuard handshake, by transport.", "transport")
	descCertExpiry     = desc("certificate_expiry_timestamp_seconds", "When the certificate the TLS ports serve ends (Unix time).")
	descPeers          = desc("wireguard_peers", "Hubs with a WireGuard peer now: those active in the last minutes, and every UDP hub online. WireGuard holds at most 65536.")
	descPeersRefused   = desc("wireguard_peers_refused_total", "Times a hub got no WireGuard peer because WireGuard held 65536: it cannot connect until other hubs go idle.")
	descAgentConnsOpen = desc("agent_connections_open", "Agent connections open now (proven or not).")
	descUDPDrops       = desc("udp_window_drops_total", "UDP hubs' data packets dropped because that hub already had 512 packets waiting for WireGuard: the relay's decryption is behind, and the hub's TCP slows down.")
	descTunnelRetx     = desc("tunnel_tcp_retransmits_total", "TCP segments the relay sent again inside the tunnels, to hubs: lost on the way, or thought lost. Losses on the way from hubs count at the agents.")
	descTunnelTimeouts = desc("tunnel_tcp_timeouts_total", "Retransmission timeouts of the relay's TCP inside the tunnels: losses toward hubs repaired only after a wait of at least 200 ms.")
)

// collector reads the relay's state and counters at scrape time.
type collector struct{ s *Server }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHubs, descHubsOnline, descSessionsOpen, descSessions, descRequests, descBytes,
		descHandshakes, descLoginFailures, descLimitHits, descLimitEvictions, descEnrollments, descAgentConns, descCertExpiry, descAgentConnsOpen,
		descPeers, descPeersRefused, descUDPDrops, descTunnelRetx, descTunnelTimeouts} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s, m := c.s, &c.s.metrics
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	byTransport := map[string]int64{"tcp": 0, "tls": 0, "udp": 0}
	hubs := s.hubs.all()
	for _, h := range hubs {
		if !s.hubs.online(h) {
			continue
		}
		h.mu.Lock()
		t := h.record.transport
		h.mu.Unlock()
		if h.online.Load() == 0 {
			t = "udp"
		}
		byTransport[t]++
	}
	gauge(descHubs, int64(len(hubs)))
	for t, n := range byTransport {
		gauge(descHubsOnline, n, t)
	}
	ended := m.sessionsEnded.Load()
	gauge(descSessionsOpen, max(m.sessionsStarted.Load()-ended, 0))
	counter(descSessions, ended)
	counter(descRequests, m.requests.Load())
	counter(descBytes, m.bytesUp.Load(), "up")
	counter(descBytes, m.bytesDown.Load(), "down")
	counter(descHandshakes, m.handshakes.Load(), "tcp")
	counter(descHandshakes, m.handshakesUDP.Load(), "udp")
	counter(descLoginFailures, m.loginFailures.Load())
	for limit, n := range map[string]int64{
		"limit_conns_per_address":          m.limitConnsPerAddr.Load(),
		"limit_requests_per_second":        m.limitRequests.Load(),
		"limit_sessions_per_hub":           m.limitSessionsPerHub.Load(),
		"limit_public_conns":               int64(s.publicGate.refused.Load()),
		"limit_agent_conns":                int64(s.agentGate.refused.Load()),
		"limit_agent_prehello_per_address": int64(s.agentGate.refusedAddr.Load()),
		"enroll_attempts":                  m.limitEnroll.Load(),
	} {
		counter(descLimitHits, n, limit)
	}
	counter(descLimitEvictions, int64(s.publicGate.evicted.Load()), "public")
	counter(descLimitEvictions, int64(s.agentGate.evicted.Load()), "agent")
	counter(descUDPDrops, m.udpWindowDrops.Load())
	st := s.stack.Stats()
	counter(descTunnelRetx, int64(st.Retransmits))
	counter(descTunnelTimeouts, int64(st.Timeouts))
	counter(descEnrollments, m.enrollments.Load(), "ok")
	counter(descEnrollments, m.enrollRefused.Load(), "refused")
	counter(descAgentConns, m.agentTCP.Load(), "tcp")
	counter(descAgentConns, m.agentTLS.Load(), "tls")
	s.mu.Lock()
	open := len(s.agent)
	s.mu.Unlock()
	gauge(descAgentConnsOpen, int64(open))
	gauge(descPeers, s.peerCount.Load())
	counter(descPeersRefused, m.peersRefused.Load())
	if leaf := s.certs.leaf(); leaf != nil {
		gauge(descCertExpiry, leaf.NotAfter.Unix())
	}
}

// serveMetrics starts the metrics listener, when metrics_listen is set.
func (s *Server) serveMetrics() error {
	if s.cfg.MetricsListen == "" {
		return nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collector{s})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	ln, err := net.Listen("tcp", s.cfg.MetricsListen)
	if err != nil {
		return fmt.Errorf("relay: metrics_listen: %w", err)
	}
	s.metricsLn = ln
	s.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.metricsSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("metrics listener failed", logger.Err, err)
		}
	}()
	s.log.Info("metrics and health on /metrics, /healthz, /readyz", "url", "http://"+ln.Addr().String()+"/")
	return nil
}

// MetricsAddr is the metrics listener's address, nil when off.
func (s *Server) MetricsAddr() net.Addr {
	if s.metricsLn == nil {
		return nil
	}
	return s.metricsLn.Addr()
}

// ready says why the relay cannot serve, or nil: the store answers (and
// a SQLite store's file is still there), the listeners are open, and the
// certificate is valid for more than ready_cert_days.
func (s *Server) ready(ctx context.Context) error {
	select {
	case <-s.closing:
		return errors.New("the relay is stopping")
	default:
	}
	if s.agentLn == nil || len(s.publicLn) == 0 {
		return errors.New("the listeners are not open")
	}
	if !store.IsPostgres(s.cfg.Store) {
		if _, err := os.Stat(s.cfg.Store); err != nil {
			return fmt.Errorf("the store's file: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.db.Revision(ctx); err != nil {
		return fmt.Errorf("the store does not answer: %v", err)
	}
	leaf := s.certs.leaf()
	if leaf == nil {
		return errors.New("no certificate")
	}
	if left := leaf.NotAfter.Sub(s.now()); left < time.Duration(s.cfg.ReadyCertDays)*24*time.Hour {
		return fmt.Errorf("the certificate ends at %s, within ready_cert_days (%d)", leaf.NotAfter.UTC().Format(time.DateTime), s.cfg.ReadyCertDays)
	}
	return nil
}
