package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hubtunnel/hubtunnel/uplink"
	"github.com/hubtunnel/hubtunnel/wire"
)

// wireBytes is the wire-bytes phase: its own relay and agent, a capture of
// the agent's TCP connection from before it is opened until after the idle
// window, and a timeline of what happened when:
//
//	agent start → connected (+2 s) = setup
//	connected + 122 s: one request through the tunnel; the agent, which
//	    initiated the session 2 minutes ago, must rekey before sending
//	request + 5 s … + 80 s: what one request still costs after it ended
//	request + 80 s … + Idle = idle window
type wireBytes struct {
	ru    *run
	setup chan struct{} // closed when setup has been measured (or failed)
	done  chan struct{} // closed when the phase has ended
	err   error

	stream                     *Stream
	tConn, tSetupEnd, tTrigger time.Time
	tIdleStart, tIdleEnd       time.Time
	tCheck                     time.Time // the agent's release check in the idle window; zero if none
	overheadAtSetup            uint64    // the agent's own overhead_bytes after setup
	idleMem                    Mem
}

// afterRequest is how long after the rekey request the idle window starts:
// past the tunnel-side TCP keepalive of a lingering connection (the
// netstack's 60 s) and WireGuard's passive keepalive 10 s after it.
const afterRequest = 80 * time.Second

func (ru *run) startWireBytes() *wireBytes {
	w := &wireBytes{ru: ru, setup: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		setupDone := sync.OnceFunc(func() { close(w.setup) })
		defer setupDone()
		w.err = w.run(setupDone)
	}()
	<-w.setup
	return w
}

func (w *wireBytes) run(setupDone func()) error {
	o := w.ru.o
	dir := filepath.Join(o.Dir, "bytes")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	hub, err := NewHub(dir, "quiet", "100.96.0.4")
	if err != nil {
		return err
	}
	relay, err := NewRelay(o.Bins, w.ru.ports, dir, "relay-bytes", false, []Hub{hub})
	if err != nil {
		return err
	}
	agent, err := NewAgent(o.Bins, w.ru.ports, dir, relay, hub, AgentSpec{Targets: map[int]string{80: w.ru.bulk.Addr()}})
	if err != nil {
		return err
	}
	capt, err := StartCapture(dir, "agent-conn", relay.AgentPort)
	if err != nil {
		return err
	}
	stopCapture := sync.OnceValue(capt.Stop)
	defer stopCapture()
	if err := relay.Start(); err != nil {
		return err
	}
	defer func() { relay.Proc.Stop() }()
	if err := agent.Start(); err != nil {
		return err
	}
	defer func() { agent.Proc.Stop() }()
	if err := agent.WaitConnected(30 * time.Second); err != nil {
		return err
	}
	w.tConn = time.Now()
	w.tSetupEnd = w.tConn.Add(2 * time.Second)
	time.Sleep(time.Until(w.tSetupEnd))
	if st, err := agent.Status(); err == nil {
		w.overheadAtSetup = st.OverheadBytes
	}
	setupDone()

	if o.Idle > 0 {
		time.Sleep(time.Until(w.tConn.Add(122 * time.Second)))
		w.tTrigger = time.Now()
		if _, err := UntilOK(relay.TokenURL("quiet", 80, "/ping"), w.tTrigger, 30*time.Second); err != nil {
			return fmt.Errorf("the request that triggers the rekey: %w", err)
		}
		w.tIdleStart = w.tTrigger.Add(afterRequest)
		w.tIdleEnd = w.tIdleStart.Add(o.Idle)
		time.Sleep(time.Until(w.tIdleStart))
		// The self-updater's first release check comes at a random
		// time 2–30 minutes after the start, then once a day
		// (selfupdate.Updater): it may fall in the window.
		var planned time.Time
		if st, err := agent.Status(); err == nil && st.Update != nil {
			planned = st.Update.NextCheck
		}
		time.Sleep(time.Until(w.tIdleEnd))
		w.idleMem, _ = agent.Proc.Mem()
		if st, err := agent.Status(); err == nil && st.Update != nil && !planned.Before(w.tIdleStart) && planned.Before(w.tIdleEnd) &&
			!st.Update.CheckedAt.Before(planned.Truncate(time.Second)) {
			w.tCheck = planned
		}
	}
	if err := stopCapture(); err != nil {
		return err
	}
	w.stream, err = ReadStream(capt.File, relay.AgentPort)
	return err
}

// finish waits for the phase and reports it.
func (w *wireBytes) finish() {
	<-w.done
	r := w.ru.r
	if w.err != nil {
		r.add("wire bytes", "phase failed", "error: "+firstLine(w.err.Error()), "", ptr(false))
		r.section("Error in phase wire bytes", "```\n%v\n```", w.err)
		return
	}
	s := w.stream
	setup := s.Window(time.Time{}, w.tSetupEnd)
	r.add("wire bytes", "tunnel setup: connect, Hellos, handshake (CloudMatic: ~15 KB)",
		fmt.Sprintf("%d B in %d packets", setup.IPBytes, setup.Packets), "≤ 2 KB", ptr(setup.IPBytes <= 2000))
	body := fmt.Sprintf(`Captured with `+"`dumpcap -i lo -f \"tcp port <relay agent port>\"`"+` on the agent's one TCP connection to a relay of
its own (hub "quiet"), from before the agent starts until the end of the idle window, and read back with
`+"`tshark -T fields`"+`. Bytes are IP total lengths: IPv4 and TCP headers (with the timestamp option
Linux uses, 52 B for a bare ACK) and payload, both directions. Loopback captures add a 14-byte
Ethernet header per packet that a real link also has; it is not counted ("with link headers" below
counts it). The payload of each direction is put back together by sequence number and split into
the frames of package wire, so each segment is known by what it carries.

**Tunnel setup** is every packet from the agent's SYN until 2 s after the agent's status API first said
"connected" (nothing else uses the tunnel then): %d B in %d packets, %d B with link headers. The
agent's own overhead_bytes counter (TCP_INFO: TCP/IP included) said %d B.

`+"```\n%s```", setup.IPBytes, setup.Packets, setup.Frame, w.overheadAtSetup, s.Describe(time.Time{}, w.tSetupEnd))

	if w.ru.o.Idle > 0 {
		hs, err := s.HandshakeAfter(w.tTrigger)
		if err != nil {
			r.add("wire bytes", "one rekey (CloudMatic: 8 KB)", "error: "+err.Error(), "≤ 400 B", ptr(false))
		} else {
			r.add("wire bytes", "one rekey (CloudMatic: 8 KB)",
				fmt.Sprintf("%d B in %d packets (initiation + response segments alone %d B)", hs.IPBytes, hs.Packets, hs.Messages), "≤ 400 B", ptr(hs.IPBytes <= 400))
			body += fmt.Sprintf(`

**One rekey**: nothing was forced. WireGuard's initiator starts a new handshake when it sends on a
session older than 120 s (REKEY_AFTER_TIME); the agent initiated the session at setup, so %s after
"connected" the bench sends one request through the tunnel, and the agent's first packet back
triggers the rekey (initiator here: %s, at +%.1f s). Counted: the initiation, the response and the
keepalive the initiator sends within %s of the response to confirm the new session (both ends hold a
keepalive that would go alone for up to %s and leave it out when data of the new session goes first),
each with the TCP/IP headers of the segments that carry it, plus the pure ACKs of exactly those
segments; not the request's own data, even where it shares a segment. %s: %d B in
%d packets, %d B with link headers. The two segments with the initiation and the response alone are
%d B; the confirming keepalive and the ACKs are the rest. The ACKs vary from run to run by one or
two: two small segments that arrive before the reader reads make Linux acknowledge at once even in
delayed-ACK mode, and whether they do depends on the request's data around the handshake.

`+"```\n%s```", w.tTrigger.Sub(w.tConn).Round(time.Second), hs.Initiator, hs.At.Sub(w.tConn).Seconds(),
				ConfirmWithin, wire.KeepaliveHold, hs.Detail, hs.IPBytes, hs.Packets, hs.Frame, hs.Messages, s.Describe(hs.At.Add(-5*time.Millisecond), hs.At.Add(ConfirmWithin)))
		}

		tail := s.Window(w.tTrigger.Add(5*time.Second), w.tIdleStart)
		r.add("wire bytes", fmt.Sprintf("traffic 5–%.0f s after one request has ended", afterRequest.Seconds()),
			fmt.Sprintf("%d B in %d packets", tail.IPBytes, tail.Packets), "", nil)
		body += fmt.Sprintf(`

**After a request**: the request above was answered within milliseconds, but the connection was not
quiet afterwards. From 5 s to %.0f s after it: %d B in %d packets, %d B with link headers. WireGuard
sends a passive keepalive 10 s after the last data it received; anything else here is the tunnel-side
TCP connections (the netstacks' keepalive after 60 s idle, resets) outliving the session.

`+"```\n%s```", afterRequest.Seconds(), tail.IPBytes, tail.Packets, tail.Frame, s.Describe(w.tTrigger.Add(5*time.Second), w.tIdleStart))

		idle := s.Window(w.tIdleStart, w.tIdleEnd)
		win := w.tIdleEnd.Sub(w.tIdleStart)
		perDay, naive, check, steadyNote := idlePerDay(s, w.tIdleStart, w.tIdleEnd, w.tCheck)
		const checkWhat = "The agent's release check (the first 2–30 minutes after it starts, at random, then once a day)"
		checkNote := checkWhat + " did not fall in this window."
		if !w.tCheck.IsZero() {
			checkNote = fmt.Sprintf("%s fell in this window at %s: %d B with the relay's passive keepalive after it, left out of both extrapolations and counted once a day.", checkWhat, w.tCheck.Format("15:04:05"), check)
		}
		r.add("wire bytes", "idle traffic per day, both ways (CloudMatic: ~1 MB)",
			fmt.Sprintf("%.1f KB/day (%d B in %d packets over %s)", perDay/1000, idle.IPBytes, idle.Packets, win.Round(time.Second)),
			"≤ 150 KB/day", ptr(perDay <= 150000))
		body += fmt.Sprintf(`

**Idle traffic** is every packet of the idle window, which starts %.0f s after that request and lasts
%s, at production timers
(the agent's TCP keepalive: %s idle, then probes; no WireGuard persistent keepalive on TCP). Extrapolated
to a day two ways, and the larger is reported: the window's bytes × 86400 s / window = %.1f KB/day; and
per keepalive period, which does not depend on where the window cuts the periods: %s. %s With link headers
the window had %d B. Agent RSS at the end of the window: %s.

`+"```\n%s```", afterRequest.Seconds(), win.Round(time.Second), vpnKeepAliveIdle(), naive/1000, steadyNote, checkNote, idle.Frame, fmtMB(w.idleMem.RSS),
			s.Describe(w.tIdleStart, w.tIdleEnd))
		r.add("memory", fmt.Sprintf("agent RSS after %s idle", w.tIdleEnd.Sub(w.tConn).Round(time.Second)), fmtMB(w.idleMem.RSS), "≤ 20 MB", ptr(w.idleMem.RSS <= 20e6))
	} else {
		body += "\n\nRekey and idle traffic were skipped (IDLE=0)."
	}
	r.section("Bytes on the agent's connection", "%s", body)
}

// releaseCheckSpan is how much of the capture from the agent's release
// check on is the check's: the exchange (milliseconds) and the relay's
// passive keepalive 10 s after it, with its ACK.
const releaseCheckSpan = 12 * time.Second

// idlePerDay extrapolates the idle window [from, to) of s to a day: the
// larger of the window's bytes scaled to a day (naive) and the keepalive
// probes' model (idleModel), plus once the agent's release check if one
// came at checkAt (zero: none) — a daily exchange scaled with the window
// would count 288 times in five minutes. check is its bytes, less any
// keepalive probe that shared its span.
func idlePerDay(s *Stream, from, to, checkAt time.Time) (perDay, naive float64, check int, steadyNote string) {
	bytes := s.Window(from, to).IPBytes
	if !checkAt.IsZero() {
		end := checkAt.Add(releaseCheckSpan)
		if end.After(to) {
			end = to
		}
		check = s.Window(checkAt, end).IPBytes
		for _, p := range s.Probes(checkAt, end) {
			check -= p.Bytes
		}
		bytes -= check
	}
	naive = float64(bytes) * 86400 / to.Sub(from).Seconds()
	steady, steadyNote := idleModel(s.Probes(from, to))
	return max(naive, steady) + float64(check), naive, check, steadyNote
}

func vpnKeepAliveIdle() string { return uplink.DefaultKeepAlive.Idle.String() }

// relayKeepAliveIdle is the relay's TCP keepalive idle time on agent
// connections (relay/relay.go agentKeepAlive, not exported).
const relayKeepAliveIdle = 5 * time.Minute

// idleModel extrapolates TCP keepalive probes to a day: for each side that
// probed, the bytes of a probe and its answer times the probes a day has at
// that side's period (the mean interval between its probes if the window
// has two or more, else its configured idle time).
func idleModel(probes []Probe) (perDay float64, note string) {
	var parts []string
	for _, agent := range []bool{true, false} {
		var times []time.Time
		bytes := 0
		for _, p := range probes {
			if p.FromAgent == agent {
				times = append(times, p.At)
				bytes += p.Bytes
			}
		}
		if len(times) == 0 {
			continue
		}
		who, period, how := "relay", relayKeepAliveIdle, "its configured idle time"
		if agent {
			who, period = "agent", uplink.DefaultKeepAlive.Idle
		}
		if len(times) >= 2 {
			period = times[len(times)-1].Sub(times[0]) / time.Duration(len(times)-1)
			how = "measured"
		}
		per := float64(bytes) / float64(len(times))
		day := per * 86400 / period.Seconds()
		perDay += day
		parts = append(parts, fmt.Sprintf("the %s's %d probe(s), %.0f B each with the answer, every %.1f s (%s): %.1f KB/day",
			who, len(times), per, period.Seconds(), how, day/1000))
	}
	if len(parts) == 0 {
		return 0, "no TCP keepalive probe in the window"
	}
	return perDay, strings.Join(parts, "; ") + fmt.Sprintf("; together %.1f KB/day", perDay/1000)
}
