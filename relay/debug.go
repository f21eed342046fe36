package relay

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"sync/atomic"
	"time"
)

// The relay's debug listener (debug_listen, off by default, loopback
// only): what a test or an operator on the relay's own machine counts to
// see that a fault left nothing behind. It says nothing of hubs, users or
// keys. It also serves Go's profiles under /debug/pprof/ (heap,
// goroutine, allocs, profile): where a relay's memory per hub goes
// (bench/hubsphase.go). A heap profile holds allocation sites and sizes,
// not their contents. It is not the metrics listener (metrics.go), which
// a Prometheus server elsewhere on a private network may reach: profiles
// are costly to take and tell much about the process, so they stay on
// loopback.

// DebugState is what GET /debug/state on debug_listen answers.
type DebugState struct {
	Goroutines        int    `json:"goroutines"`             // runtime.NumGoroutine
	WireGuardPeers    int    `json:"wireguard_peers"`        // hubs with a WireGuard peer now (peers.go: only active ones)
	AgentConnections  int    `json:"agent_connections"`      // open agent connections, claimed or not
	ReplayResets      int64  `json:"replay_resets"`          // hubs' WireGuard replay state reset (clock.go) since start
	UDPWindowDrops    int64  `json:"udp_window_drops"`       // UDP hubs' data packets dropped for a full window (bind.go) since start
	UDPHubsHeard      int    `json:"udp_hubs_heard"`         // hubs heard from over UDP since start: a handshake, or a keepalive on a session of theirs
	TunnelRetransmits uint64 `json:"tunnel_tcp_retransmits"` // TCP segments the relay sent again inside the tunnels since start
	TunnelTimeouts    uint64 `json:"tunnel_tcp_timeouts"`    // retransmission timeouts of that TCP since start
}

// debugCounters are counted where things happen and read by the debug
// listener.
type debugCounters struct {
	replayResets atomic.Int64
}

// checkDebugListen is Validate's check of debug_listen: empty, or a
// loopback host:port.
func checkDebugListen(addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want 127.0.0.1:port", addr)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: only a loopback address (127.0.0.1 or [::1]): it is for the relay's own machine", addr)
	}
	return nil
}

// startDebug serves debug_listen, if set, until Close.
func (s *Server) startDebug() error {
	if s.cfg.DebugListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.DebugListen)
	if err != nil {
		return fmt.Errorf("relay: debug_listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/state", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		st := s.stack.Stats()
		json.NewEncoder(w).Encode(DebugState{
			Goroutines:        runtime.NumGoroutine(),
			AgentConnections:  s.agentCount(),
			WireGuardPeers:    int(s.peerCount.Load()),
			ReplayResets:      s.debug.replayResets.Load(),
			UDPWindowDrops:    s.metrics.udpWindowDrops.Load(),
			UDPHubsHeard:      s.udpHubsHeard(),
			TunnelRetransmits: st.Retransmits,
			TunnelTimeouts:    st.Timeouts,
		})
	})
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	s.debugLn = ln
	s.debugSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go s.debugSrv.Serve(ln)
	s.log.Info("debug state", "url", "http://"+ln.Addr().String()+"/debug/state")
	return nil
}

// udpHubsHeard counts the hubs udpInbound heard from since the relay
// began: a handshake completed, or a keepalive on one of their sessions
// (a relay that follows another hears its hubs so, resumeUDP).
func (s *Server) udpHubsHeard() int {
	began := s.began.UnixNano()
	n := 0
	for _, h := range s.hubs.all() {
		if h.udpHandshake.Load() >= began || h.udpSeen.Load() >= began {
			n++
		}
	}
	return n
}

// DebugAddr is the debug listener's address, or nil if debug_listen is
// not set.
func (s *Server) DebugAddr() net.Addr {
	if s.debugLn == nil {
		return nil
	}
	return s.debugLn.Addr()
}
