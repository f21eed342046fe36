package bench

import (
	"fmt"
	"strings"
	"time"
)

// Names of the peers the targets compare (peerprocs.go names them).
const (
	peerHubTCP = "hubtunnel tcp"
	peerHubUDP = "hubtunnel udp"
	peerFrp    = "frp (TLS, yamux)"
	peerChisel = "chisel (SSH over WebSocket)"
	peerSSH    = "OpenSSH ssh -R"
)

// reportPeers adds the peers rows (the targets of issue 18 as budgets,
// each a ratio from this run) and the section with the table.
func (ru *run) reportPeers(res []*peerResult, t peersTimes, idleNote string, ciphers []CipherCost) {
	r := ru.r
	by := map[string]*peerResult{}
	for _, p := range res {
		if p.err != nil {
			r.add("peers", p.name+": not measured", firstLine(p.err.Error()), "", ptr(false))
			continue
		}
		if p.measured {
			by[p.name] = p
		}
	}
	// ratio adds a budget row: value of ours against limit × value of
	// theirs, lower (or, with atLeast, higher) being better.
	ratio := func(what, ours, theirs string, limit float64, atLeast bool, get func(*peerResult) float64, unit func(float64) string) {
		budget := fmt.Sprintf("≤ %.1f × %s's", limit, theirs)
		if atLeast {
			budget = fmt.Sprintf("≥ %.1f × %s's", limit, theirs)
		}
		o, th := by[ours], by[theirs]
		if o == nil || th == nil {
			missing := ours
			if o != nil {
				missing = theirs
			}
			r.add("peers", what, "not compared: "+missing+" was not measured", budget, ptr(false))
			return
		}
		a, b := get(o), get(th)
		if b == 0 {
			r.add("peers", what, fmt.Sprintf("%s against 0 for %s", unit(a), theirs), budget, ptr(false))
			return
		}
		x := a / b
		pass := x <= limit
		if atLeast {
			pass = x >= limit
		}
		r.add("peers", what, fmt.Sprintf("%s = %.2f × %s's %s", unit(a), x, theirs, unit(b)), budget, ptr(pass))
	}
	sgb := func(v float64) string { return fmt.Sprintf("%.2f s/GB", v) }
	mbs := func(v float64) string { return fmt.Sprintf("%.0f MB/s", v) }
	usr := func(v float64) string { return fmt.Sprintf("%.0f µs", v) }
	ratio("agent CPU per GB, TCP transport", peerHubTCP, peerFrp, 0.8, false, func(p *peerResult) float64 { return p.agentPerGB }, sgb)
	ratio("relay CPU per GB, TCP transport", peerHubTCP, peerFrp, 0.8, false, func(p *peerResult) float64 { return p.relayPerGB }, sgb)
	ratio("agent CPU per small request, TCP transport", peerHubTCP, peerSSH, 1.2, false, func(p *peerResult) float64 { return us(p.reqCPU) }, usr)
	ratio("1 stream download, TCP transport", peerHubTCP, peerFrp, 1.2, true, func(p *peerResult) float64 { return p.mbps1 }, mbs)
	ratio("8 streams download, TCP transport", peerHubTCP, peerFrp, 1.2, true, func(p *peerResult) float64 { return p.mbps8 }, mbs)
	ratio("agent CPU per GB, UDP transport against TCP", peerHubUDP, peerHubTCP, 1.5, false, func(p *peerResult) float64 { return p.agentPerGB }, sgb)
	ratio("relay CPU per GB, UDP transport against TCP", peerHubUDP, peerHubTCP, 1.5, false, func(p *peerResult) float64 { return p.relayPerGB }, sgb)

	// The agent's peak RSS over the rounds (1 and 8 downloads, 50
	// connections' requests, every tool's turn between): bulk load, whose
	// budget is BRIEF.md's.
	for _, n := range []string{peerHubTCP, peerHubUDP} {
		if p := by[n]; p != nil {
			r.add("peers", "agent RSS peak (VmHWM) over the rounds, "+n, fmtMB(p.rssPeak), "≤ 48 MB", ptr(p.rssPeak > 0 && p.rssPeak <= 48e6))
		}
	}

	// Added latency: ours against the best of the other tools.
	var best *peerResult
	for _, n := range []string{peerFrp, peerChisel, peerSSH} {
		if p := by[n]; p != nil && p.added && (best == nil || p.addedP50 < best.addedP50) {
			best = p
		}
	}
	what, budget := "added p50 of a small request, TCP transport", "≤ the best peer's"
	switch ht := by[peerHubTCP]; {
	case ht != nil && !ht.added:
		r.add("peers", what, "not compared: direct was not measured in every round, so nothing says what the path added", budget, ptr(false))
	case ht == nil || best == nil:
		r.add("peers", what, "not compared: hubtunnel tcp or every other tool was not measured", budget, ptr(false))
	default:
		r.add("peers", what, fmt.Sprintf("%s against %s's %s", fmtMs(ht.addedP50), best.name, fmtMs(best.addedP50)), budget, ptr(ht.addedP50 <= best.addedP50))
	}

	var tbl strings.Builder
	tbl.WriteString("| | 1 stream MB/s | 8 streams MB/s | p50 ms | added p50 ms | req/s (50 conns) | agent CPU s/GB | relay CPU s/GB | agent µs/req | agent RSS peak MB | idle B/hour |\n")
	tbl.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	var versions, rounds []string
	for _, p := range res {
		if p.version != "" {
			versions = append(versions, fmt.Sprintf("%s: %s", p.name, p.version))
		}
		if !p.measured {
			fmt.Fprintf(&tbl, "| %s | not measured: %s | | | | | | | | | |\n", p.name, mdEscape(firstLine(p.err.Error())))
			continue
		}
		dash := func(v string) string {
			if p.agent == nil {
				return "–"
			}
			return v
		}
		added := "–"
		if p.agent != nil && p.added {
			added = fmt.Sprintf("%.3f", ms(p.addedP50))
		}
		idle := "–"
		if p.idleBytes >= 0 {
			idle = fmt.Sprintf("%.0f", p.idlePerHour)
		}
		fmt.Fprintf(&tbl, "| %s | %.0f | %.0f | %.3f | %s | %.0f | %s | %s | %s | %s | %s |\n", p.name, p.mbps1, p.mbps8,
			ms(p.p50), added, p.rps,
			dash(fmt.Sprintf("%.2f", p.agentPerGB)), dash(fmt.Sprintf("%.2f", p.relayPerGB)), dash(fmt.Sprintf("%.0f", us(p.reqCPU))),
			dash(fmt.Sprintf("%.1f", float64(p.rssPeak)/1e6)), idle)
		var rs []string
		for _, x := range p.rounds {
			rs = append(rs, fmt.Sprintf("%.0f/%.0f MB/s, p50 %.3f ms, %.0f req/s, agent %.2f s/GB, relay %.2f s/GB, %.0f µs/req",
				x.mbps1, x.mbps8, ms(x.p50), x.rps, perGB(x.agent, x.bulkBytes), perGB(x.relay, x.bulkBytes), us(x.reqCPU)))
		}
		rounds = append(rounds, fmt.Sprintf("- %s: %s", p.name, strings.Join(rs, "; ")))
	}
	r.section("Peers: hubtunnel against frp, chisel and OpenSSH", `The same workloads through every peer, in one run, interleaved: %d rounds, in each every peer in turn
(the order rotating by one from round to round); each figure is the median of the rounds. The backend is
the bench's bulk server for all; clients and server share the hubbench process.

- **1 and 8 streams**: download of zeros (`+"`GET /down`"+`), %s warm-up, then %s measured; MB/s = 10⁶ B/s of payload.
- **p50**: %d `+"`GET /small`"+` (a 2-byte answer) per round, timed one by one on one kept-alive connection
  by a Go client, after 50 untimed; "added" is the peer's p50 minus direct's in the same round.
- **req/s**: wrk, 2 threads, %d kept-alive connections, %s, `+"`GET /small`"+`.
- **CPU s/GB**: user + system CPU time (utime + stime of /proc/PID/stat, 10 ms ticks) of the agent and of
  the relay over the measured time of both bulk transfers, per 10⁹ payload bytes moved in it. The agent
  is the hub-side process (hubtunnel, frpc, chisel client, ssh; for the two-hop relay its hop B), the
  relay the public side (hubrelay, frps, chisel server, sshd with its per-connection processes; hop A).
- **agent µs/req**: the agent's CPU time over the wrk run per completed request.
- **agent RSS peak**: the agent's VmHWM at the end of the rounds.
- **idle B/hour**: %s
- The tools: frp with TLS forced at frps and token authentication, one TCP proxy, otherwise defaults;
  chisel `+"`server --reverse`"+` and `+"`client … R:…`"+` with a user and password, otherwise defaults;
  OpenSSH `+"`ssh -R`"+` to an sshd of the bench's own on loopback (throwaway ed25519 host and user keys,
  default ciphers). hubtunnel: one relay, one agent per transport, production defaults.
- **Ciphers on this CPU** (MeasureCiphers, one goroutine, Go's code, after the rounds): %s. A
  download's every byte is sealed once by the agent and opened once by the relay, so that much of each
  row's CPU per GB is its cipher's: hubtunnel has WireGuard's ChaCha20-Poly1305 on both transports (as
  OpenSSH by default, in C), frp the AES-128-GCM that Go's TLS 1.3 picks where the CPU has AES instructions.
  On a CCU3 (32-bit ARM, no AES instructions) Go's AES-GCM is portable code and the slower of the two
  (under qemu's ARMv7 it took 2.4 × ChaCha20-Poly1305's time per GB; BENCHMARKS.md's hand-kept part).

Setup took %s, the rounds %s; the phase %s. Load average (1, 5, 15 min) at its start %s, at its end %s:
a 1-minute load well above the number of CPUs (see Machine) is other work competing with the peers.

%s
Versions: %s.

Per round (1/8 streams, p50, req/s, CPU):

%s
`, ru.o.Rounds, ru.o.Warmup, ru.o.Duration, max(100, ru.o.Calls/max(1, ru.o.Rounds)), wrkConns, ru.o.Duration, idleNote, cipherLine(ciphers),
		t.setup.Round(time.Second), t.rounds.Round(time.Second), t.total.Round(time.Second), t.loadStart, t.loadEnd,
		tbl.String(), strings.Join(versions, "; "), strings.Join(rounds, "\n"))
}

// cipherLine says what each cipher costs per GB.
func cipherLine(cs []CipherCost) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s seals %d KiB messages at %.2f s/GB and opens them at %.2f s/GB", c.Name, c.Message>>10, c.Seal, c.Open))
	}
	return strings.Join(parts, "; ")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
