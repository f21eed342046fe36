package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The peers phase runs the same workloads through hubtunnel and through the
// tools a hub owner could pick instead (frp, chisel, OpenSSH's ssh -R), next
// to the direct and the plain two-hop baselines, all in one run:
//
//  1. start every peer (a peer that cannot be built or started gets a row
//     saying why, and the others go on);
//  2. an idle window with every peer connected: one dumpcap counts the
//     bytes of each agent's connection to its relay;
//  3. Rounds rounds; in each, every peer in turn (the order rotates from
//     round to round) gets: 1 stream and 8 streams of bulk download (CPU of
//     its agent and relay read over them), Calls/Rounds small requests
//     timed one by one, and wrk with 50 connections (its agent's CPU read
//     around it);
//  4. medians over the rounds, and the targets as ratios of them.

// peerRound is what one round measured on one peer.
type peerRound struct {
	mbps1, mbps8  float64 // MB/s (10⁶ B/s) of payload
	bulkBytes     uint64  // moved in the measured windows of both transfers
	agent, relay  time.Duration
	p50, addedP50 time.Duration
	added         bool // addedP50 is known: direct was measured in the round
	rps           float64
	reqCPU        time.Duration // agent CPU per wrk request
}

// peerResult is a peer's medians over the rounds.
type peerResult struct {
	*peer
	rounds                 []peerRound
	mbps1, mbps8           float64
	agentPerGB, relayPerGB float64 // CPU seconds per 10⁹ B
	p50, addedP50          time.Duration
	added                  bool // addedP50 is known: direct was measured in every round
	rps                    float64
	reqCPU                 time.Duration
	rssPeak                int64
	idleBytes              int64   // in the idle window; -1: no connection to count
	idlePerHour            float64 // idleBytes scaled to an hour
	measured               bool
}

// wrkConns is the concurrent connections of the req/s figure.
const wrkConns = 50

func (ru *run) peers() error {
	start, load := time.Now(), LoadAvg()
	dir := filepath.Join(ru.o.Dir, "peers")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	set := &peerSet{ru: ru, dir: dir}
	defer set.stopAll()
	var res []*peerResult
	for _, s := range []struct {
		name, group string
		start       func() ([]*peer, error)
	}{
		{"direct", "direct", set.direct}, {"plain two-hop", "two-hop", set.twoHop},
		{"hubtunnel", "hubtunnel", func() ([]*peer, error) { return set.hubtunnel(ru.o.Bins, "") }},
		{"hubtunnel (base)", "base", func() ([]*peer, error) { return set.hubtunnel(*ru.o.BaseBins, " (base)") }},
		{"frp", "frp", set.frp}, {"chisel", "chisel", set.chisel}, {"OpenSSH", "ssh", set.ssh},
	} {
		if !ru.o.startsPeers(s.group) {
			continue
		}
		ps, err := s.start()
		if err != nil {
			ru.logf("bench:   peers: %s: %v", s.name, err)
			if !strings.HasPrefix(err.Error(), s.name+":") {
				err = fmt.Errorf("%s: %w", s.name, err)
			}
			ps = []*peer{{name: s.name, err: err}}
		}
		for _, p := range ps {
			res = append(res, &peerResult{peer: p, idleBytes: -1})
		}
	}
	setupTook := time.Since(start)

	idleNote, err := ru.peersIdle(dir, res)
	if err != nil {
		return err
	}

	roundsStart := time.Now()
	live := func() []*peerResult {
		var out []*peerResult
		for _, r := range res {
			if r.err == nil {
				out = append(out, r)
			}
		}
		return out
	}
	for round := range ru.o.Rounds {
		ps := live()
		if len(ps) == 0 {
			break
		}
		// Each round starts with the next peer, so that none is always
		// measured first or right after the same other.
		off := round % len(ps)
		ps = append(ps[off:], ps[:off]...)
		var direct time.Duration
		directOK := false
		for _, p := range ps {
			pr, err := ru.peerRound(p.peer)
			if err != nil {
				ru.logf("bench:   peers: %s, round %d: %v", p.name, round+1, err)
				p.err = fmt.Errorf("%s: failed in round %d: %w", p.name, round+1, err)
				continue
			}
			if p.agent == nil {
				direct, directOK = pr.p50, true
			}
			p.rounds = append(p.rounds, pr)
			ru.logf("bench:   peers round %d %s: %.0f / %.0f MB/s, p50 %s, %.0f req/s, agent %.2f s/GB, %.0f µs/req",
				round+1, p.name, pr.mbps1, pr.mbps8, fmtMs(pr.p50), pr.rps, perGB(pr.agent, pr.bulkBytes), us(pr.reqCPU))
		}
		// Added latency against direct in the same round; none without
		// it (PEER_GROUPS without direct, or its round failed).
		for _, p := range ps {
			if n := len(p.rounds); directOK && n > 0 && len(p.rounds) == round+1 {
				p.rounds[n-1].addedP50 = p.rounds[n-1].p50 - direct
				p.rounds[n-1].added = true
			}
		}
	}
	for _, p := range res {
		p.summarize()
	}
	roundsTook := time.Since(roundsStart)
	ciphers, err := MeasureCiphers(2 * time.Second)
	if err != nil {
		return fmt.Errorf("peers: ciphers: %w", err)
	}
	ru.reportPeers(res, peersTimes{setup: setupTook, rounds: roundsTook, total: time.Since(start), loadStart: load, loadEnd: LoadAvg()}, idleNote, ciphers)
	return nil
}

// peerRound measures one peer once.
func (ru *run) peerRound(p *peer) (peerRound, error) {
	var pr peerRound
	var a0, r0 time.Duration
	var cpuErr error
	for _, streams := range []int{1, 8} {
		open := false // between the two calls of Window
		window := func() {
			a, r, err := p.cpu()
			if err != nil {
				cpuErr = err
				return
			}
			if open = !open; open {
				a0, r0 = a, r
				return
			}
			pr.agent += a - a0
			pr.relay += r - r0
		}
		if p.agent == nil {
			window = nil
		}
		t := Transfer{Addr: p.addr, Host: p.host, Auth: p.auth, Streams: streams, Dir: Download,
			Warmup: ru.o.Warmup, Duration: ru.o.Duration, Server: ru.bulk, Window: window}
		out, err := t.Run(nil)
		if err != nil {
			return pr, fmt.Errorf("%d stream(s): %w", streams, err)
		}
		if cpuErr != nil {
			return pr, cpuErr
		}
		mbs := float64(out.Bytes) / out.Elapsed.Seconds() / 1e6
		if streams == 1 {
			pr.mbps1 = mbs
		} else {
			pr.mbps8 = mbs
		}
		pr.bulkBytes += out.Bytes
	}

	n := max(100, ru.o.Calls/max(1, ru.o.Rounds))
	lat, err := timeSmall(p, n, 50)
	if err != nil {
		return pr, err
	}
	pr.p50 = lat.Quantile(0.5)

	host := p.host
	headers := []string{}
	if host != "" {
		headers = append(headers, "Host: "+host)
	}
	if p.auth != "" {
		headers = append(headers, "Authorization: "+p.auth)
	}
	a0, _, err = p.cpu()
	if err != nil {
		return pr, err
	}
	w, err := Wrk("http://"+p.addr+"/small", wrkConns, ru.o.Duration, headers)
	if err != nil {
		return pr, err
	}
	a1, _, err := p.cpu()
	if err != nil {
		return pr, err
	}
	pr.rps = w.PerSec
	pr.reqCPU = (a1 - a0) / time.Duration(w.Requests)
	return pr, nil
}

// timeSmall times n GET /small through p one by one on one kept-alive
// connection, after warm untimed ones.
func timeSmall(p *peer, n, warm int) (Latencies, error) {
	c := LoopbackClient(true, 10*time.Second)
	defer c.CloseIdleConnections()
	url := "http://" + p.addr + "/small"
	one := func() (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return 0, err
		}
		if p.host != "" {
			req.Host = p.host
		}
		if p.auth != "" {
			req.Header.Set("Authorization", p.auth)
		}
		t0 := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return 0, fmt.Errorf("GET /small: %w", err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64))
		resp.Body.Close()
		d := time.Since(t0)
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != "ok" {
			return 0, fmt.Errorf("GET /small: %s %q %v", resp.Status, body, err)
		}
		return d, nil
	}
	l := make(Latencies, 0, n)
	for i := range warm + n {
		d, err := one()
		if err != nil {
			return nil, err
		}
		if i >= warm {
			l = append(l, d)
		}
	}
	return l, nil
}

// peersIdle captures every peer's agent connection at once for
// Options.PeerIdle, after a settling pause, and sets idleBytes.
func (ru *run) peersIdle(dir string, res []*peerResult) (string, error) {
	var filters []string
	for _, p := range res {
		if p.err == nil && p.idle != "" {
			filters = append(filters, "("+p.idle+")")
		}
	}
	if ru.o.PeerIdle <= 0 || len(filters) == 0 {
		return "The idle window was skipped (PEERS_IDLE=0).", nil
	}
	// Startup traffic (hubtunnel's first keepalives, frp's first
	// heartbeat answers) settles within seconds.
	const settle = 15 * time.Second
	time.Sleep(settle)
	capt, err := StartCaptureFilter(dir, "peers-idle", strings.Join(filters, " or "))
	if err != nil {
		return "", err
	}
	t0 := time.Now()
	time.Sleep(ru.o.PeerIdle)
	if err := capt.Stop(); err != nil {
		return "", err
	}
	win := time.Since(t0)
	out, err := exec.Command("tshark", "-r", capt.File, "-T", "fields", "-E", "separator=,",
		"-e", "ip.len", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "udp.srcport", "-e", "udp.dstport").Output()
	if err != nil {
		return "", fmt.Errorf("bench: tshark -r %s: %w", capt.File, err)
	}
	counts, err := ParseIdle(string(out))
	if err != nil {
		return "", err
	}
	for _, p := range res {
		if p.err != nil || p.idle == "" {
			continue
		}
		p.idleBytes = counts[p.idle]
		p.idlePerHour = float64(p.idleBytes) * 3600 / win.Seconds()
	}
	return fmt.Sprintf("Every peer connected and idle for %s (after %s to settle), captured at once with one dumpcap on lo, filtered by each agent connection's relay port; bytes are IP total lengths (TCP/UDP and IP headers included), both directions, scaled to an hour.", win.Round(time.Second), settle), nil
}

// ParseIdle sums tshark's "ip.len,tcp.srcport,tcp.dstport,udp.srcport,udp.dstport"
// lines by capture filter: "tcp port N" and "udp port N" for each port seen.
func ParseIdle(text string) (map[string]int64, error) {
	sum := map[string]int64{}
	for i, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) != 5 {
			return nil, fmt.Errorf("bench: tshark line %d: %d fields, want 5: %q", i+1, len(f), line)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bench: tshark line %d: ip.len %q", i+1, f[0])
		}
		proto, ports := "tcp", f[1:3]
		if f[1] == "" {
			proto, ports = "udp", f[3:5]
		}
		seen := map[string]bool{}
		for _, port := range ports {
			k := proto + " port " + port
			if port != "" && !seen[k] {
				seen[k] = true
				sum[k] += n
			}
		}
	}
	return sum, nil
}

func (p *peerResult) summarize() {
	if len(p.rounds) == 0 || p.err != nil {
		return
	}
	p.measured = true
	get := func(f func(peerRound) float64) float64 {
		var v []float64
		for _, r := range p.rounds {
			v = append(v, f(r))
		}
		slices.Sort(v)
		if len(v)%2 == 0 {
			return (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		return v[len(v)/2]
	}
	p.mbps1 = get(func(r peerRound) float64 { return r.mbps1 })
	p.mbps8 = get(func(r peerRound) float64 { return r.mbps8 })
	p.agentPerGB = get(func(r peerRound) float64 { return perGB(r.agent, r.bulkBytes) })
	p.relayPerGB = get(func(r peerRound) float64 { return perGB(r.relay, r.bulkBytes) })
	p.p50 = time.Duration(get(func(r peerRound) float64 { return float64(r.p50) }))
	p.added = !slices.ContainsFunc(p.rounds, func(r peerRound) bool { return !r.added })
	if p.added {
		p.addedP50 = time.Duration(get(func(r peerRound) float64 { return float64(r.addedP50) }))
	}
	p.rps = get(func(r peerRound) float64 { return r.rps })
	p.reqCPU = time.Duration(get(func(r peerRound) float64 { return float64(r.reqCPU) }))
	if p.agent != nil {
		if m, err := p.agent.Mem(); err == nil {
			p.rssPeak = m.HWM
		}
	}
}

func perGB(cpu time.Duration, bytes uint64) float64 {
	if bytes == 0 {
		return 0
	}
	return cpu.Seconds() / (float64(bytes) / 1e9)
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

type peersTimes struct {
	setup, rounds, total time.Duration
	loadStart, loadEnd   string // load averages (1, 5, 15 min)
}
