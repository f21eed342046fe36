package agent

import (
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/hubtunnel/hubtunnel/config"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/stats"
)

// The agent's traffic record (package stats) is fed from what the agent
// counts anyway: the users' bytes from portmap's Forwarder, and the network
// view of the relay connection from the transport (statsSource): TCP_INFO
// for the TCP transports, the datagrams and their bytes for UDP. Every
// statsEvery the differences since the last sample go to the Recorder,
// which writes stats.json at most every 10 minutes and at Close; the
// connection's changes between samples become its events.

// StatsConfig is the [stats] table: the traffic statistics.
type StatsConfig struct {
	// PlanMB is the mobile plan's volume per month, in MB (1 MB = 10⁶
	// bytes), shown against the month's use. Default 0: no plan.
	PlanMB int `toml:"plan_mb"`
	// PlanStartDay is the day of the month the plan's month begins, 1 to
	// 31 (in a shorter month its last day). Default 1.
	PlanStartDay int `toml:"plan_start_day"`
}

func (s *StatsConfig) validate() error {
	if s.PlanMB < 0 || s.PlanMB > 100_000_000 {
		return config.Errorf("stats.plan_mb", "%d: want the plan's volume in MB, or 0 for none", s.PlanMB)
	}
	if s.PlanStartDay == 0 {
		s.PlanStartDay = 1
	}
	if s.PlanStartDay < 1 || s.PlanStartDay > 31 {
		return config.Errorf("stats.plan_start_day", "%d: want a day of the month, 1 to 31", s.PlanStartDay)
	}
	return nil
}

// statsEvery is how often the agent samples its counters into the record.
// A sample is a few loads and one getsockopt; the record writes its file
// far more rarely.
const statsEvery = 10 * time.Second

// statsSource is what a transport tells the traffic record.
type statsSource interface {
	// netBytes is what the network carried on the relay connection since
	// the transport was made, each way, headers included.
	netBytes() (rx, tx uint64)
	// dropReason is why the last relay connection ended; "" if unknown.
	dropReason() string
}

// statsFeed is the agent's last sample.
type statsFeed struct {
	mu                sync.Mutex
	userIn, userOut   uint64 // portmap's totals, at most the network's
	overIn, overOut   uint64 // the network view minus the user traffic
	connected, everUp bool
	connects          uint64
	lastDrop          string
}

// openStats makes the record (stats.json in the config folder) and notes
// the start.
func (a *Agent) openStats() {
	file := ""
	if a.cfg.dir != "" {
		file = filepath.Join(a.cfg.dir, stats.FileName)
	}
	a.stats = stats.New(stats.Config{
		File:         file,
		PlanMB:       a.cfg.Stats.PlanMB,
		PlanStartDay: a.cfg.Stats.PlanStartDay,
		Logf:         a.logf,
	})
	a.stats.Event(stats.EventStart, "")
}

// statsLoop samples until the agent closes.
func (a *Agent) statsLoop() {
	defer a.wg.Done()
	t := time.NewTicker(statsEvery)
	defer t.Stop()
	for {
		select {
		case <-a.closing:
			return
		case <-t.C:
			a.sampleStats()
		}
	}
}

// closeStats takes the last sample, once everything is closed (a relay
// connection is counted as it closes), and writes the record.
func (a *Agent) closeStats() {
	if a.stats == nil {
		return
	}
	a.sampleStats()
	a.stats.Event(stats.EventStop, "")
	a.stats.Close()
}

// sampleStats adds what was counted since the last sample, and the
// connection's change, to the record.
func (a *Agent) sampleStats() {
	f := &a.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	in, out, overIn, overOut := a.countsLocked()
	src, _ := a.tr.(statsSource)
	add := stats.Counts{UserIn: in - f.userIn, UserOut: out - f.userOut}
	var back stats.Counts
	if overIn >= f.overIn {
		add.OverheadIn = overIn - f.overIn
	} else {
		back.OverheadIn = f.overIn - overIn
	}
	if overOut >= f.overOut {
		add.OverheadOut = overOut - f.overOut
	} else {
		back.OverheadOut = f.overOut - overOut
	}
	f.userIn, f.userOut, f.overIn, f.overOut = in, out, overIn, overOut
	a.stats.Add(add)
	if !back.IsZero() {
		a.stats.Retract(back)
	}

	if a.dev == nil {
		return
	}
	ls := a.link()
	conns := a.tr.connects()
	drop := ""
	if src != nil {
		drop = src.dropReason()
	}
	switch {
	case ls.connected && !f.connected && !f.everUp:
		a.stats.Event(stats.EventConnected, "")
	case ls.connected && (!f.connected || conns != f.connects):
		a.stats.Event(stats.EventReconnected, firstOf(drop, f.lastDrop))
	case !ls.connected && f.connected:
		a.stats.Event(stats.EventDisconnected, firstOf(ls.lastError, drop))
	}
	f.connected, f.connects = ls.connected, conns
	f.everUp = f.everUp || ls.connected
	if !ls.connected && ls.lastError != "" {
		f.lastDrop = ls.lastError
	}
}

// countsLocked is the users' bytes and the overhead since the start, each
// way, now; a.feed.mu is held. The network's bytes are exact; a session's
// are counted a moment before (sent) or after (received) they cross it,
// so the users' are taken as at most the network's, and the overhead as
// the rest: it may shrink when a session's count catches up (Retract).
func (a *Agent) countsLocked() (in, out, overIn, overOut uint64) {
	_, in, out = a.fwd.Stats()
	var rx, tx uint64
	if src, ok := a.tr.(statsSource); ok {
		rx, tx = src.netBytes()
	}
	in, out = min(in, rx), min(out, tx)
	return in, out, rx - in, tx - out
}

func firstOf(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// link is the transport's status now.
func (a *Agent) link() linkStatus {
	a.keyMu.Lock()
	relayKey := a.relayKey
	a.keyMu.Unlock()
	st, _ := a.dev.Stats()
	return a.tr.status(st[relayKey])
}

// statsStatus fills the status API's traffic fields.
func (a *Agent) statsStatus(s *localapi.Status) {
	if a.stats == nil {
		return
	}
	rep := a.stats.Report()
	traffic := func(c stats.Counts) *localapi.Traffic {
		return &localapi.Traffic{UserIn: c.UserIn, UserOut: c.UserOut, OverheadIn: c.OverheadIn, OverheadOut: c.OverheadOut, Total: c.Total()}
	}
	s.Today, s.Month = traffic(rep.Today), traffic(rep.Month)
	a.feed.mu.Lock()
	_, _, overIn, overOut := a.countsLocked()
	a.feed.mu.Unlock()
	s.OverheadBytes = overIn + overOut
}

// statsHandler is the statistics page and its JSON (package stats), which
// the panel serves behind its CCU session check, in the panel's language
// (?lang=, which the panel sets).
func (a *Agent) statsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lang := r.URL.Query().Get("lang")
		if lang != "de" {
			lang = "en"
		}
		stats.Handler(a.stats, lang).ServeHTTP(w, r)
	})
}

// countingBind counts the datagrams of the UDP transport and their bytes,
// for the network view of a UDP tunnel.
type countingBind struct {
	conn.Bind
	rxPackets, rxBytes atomic.Uint64
	txPackets, txBytes atomic.Uint64
}

func (b *countingBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, p, err := b.Bind.Open(port)
	for i, fn := range fns {
		fns[i] = func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			n, err := fn(packets, sizes, eps)
			var bytes uint64
			for _, s := range sizes[:n] {
				bytes += uint64(s)
			}
			b.rxPackets.Add(uint64(n))
			b.rxBytes.Add(bytes)
			return n, err
		}
	}
	return fns, p, err
}

func (b *countingBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	err := b.Bind.Send(bufs, ep)
	if err == nil {
		var bytes uint64
		for _, p := range bufs {
			bytes += uint64(len(p))
		}
		b.txPackets.Add(uint64(len(bufs)))
		b.txBytes.Add(bytes)
	}
	return err
}

// netBytes is the datagrams' bytes plus an IP and UDP header each: 28
// bytes over IPv4, 48 over IPv6.
func (b *countingBind) netBytes(ipv6 bool) (rx, tx uint64) {
	hdr := uint64(20 + 8)
	if ipv6 {
		hdr = 40 + 8
	}
	return b.rxBytes.Load() + b.rxPackets.Load()*hdr, b.txBytes.Load() + b.txPackets.Load()*hdr
}
