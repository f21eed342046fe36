package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// make soak: hours of a hub's life pressed into half an hour. For each
// transport, a relay and an agent in namespaces of their own, joined by
// the userspace wire (tunwire_test.go), carry mixed sessions the whole
// time — requests, downloads, and kept-alive connections making calls —
// while the wire cycles through loss, delay, reordering and a blackhole,
// and the relay is restarted every two and a half minutes, by SIGTERM and
// by SIGKILL in turn. Every 5 s the agent's and the relay's goroutines,
// descriptors and memory are sampled.
//
// What must hold: in the last 15 s of every clean phase each session
// works (the tunnel is back by itself, whatever came before), no session
// reaches its deadline anywhere (a minute, two for a download: it
// completes or fails, slowly perhaps, but it does not hang), and at
// the end usage is back within the fault tests' slack of where it was
// after the warm-up. The samples go to HT_SOAK_OUT (make soak: dist/soak)
// as a CSV, an SVG chart and a Markdown table per transport.

// soakPhase is one step of the cycle.
type soakPhase struct {
	name    string
	d       time.Duration
	imp     impairment
	restart string // "", "SIGTERM" or "SIGKILL": the relay is restarted as the phase begins
}

// soakCycle is five minutes; the soak repeats it until its time is up.
var soakCycle = []soakPhase{
	{name: "clean", d: 45 * time.Second},
	{name: "loss 5 %", d: 45 * time.Second, imp: impairment{loss: 0.05}},
	{name: "clean after relay SIGTERM", d: 30 * time.Second, restart: "SIGTERM"},
	{name: "delay 200 ms", d: 40 * time.Second, imp: impairment{delay: 200 * time.Millisecond}},
	{name: "reorder 25 % / 50 ms", d: 30 * time.Second, imp: impairment{delay: 50 * time.Millisecond, reorder: 0.25}},
	{name: "clean after relay SIGKILL", d: 30 * time.Second, restart: "SIGKILL"},
	{name: "blackhole", d: 20 * time.Second, imp: impairment{loss: 1}},
	{name: "clean", d: 60 * time.Second},
}

// soakQuiet is the end of a clean phase in which every session must work.
const soakQuiet = 15 * time.Second

type soakOp struct {
	kind       string
	start, end time.Time
	err        error
	hung       bool
}

type soakSample struct {
	at    time.Time
	u     usage
	ok    bool
	phase int
}

func TestSoak(t *testing.T) {
	if !soaking() {
		t.Skip("make soak runs it (HT_SOAK=30m)")
	}
	total, err := time.ParseDuration(os.Getenv("HT_SOAK"))
	if err != nil || total < time.Minute || total > 4*time.Hour {
		t.Fatalf("HT_SOAK=%q: want a duration from 1m to 4h", os.Getenv("HT_SOAK"))
	}
	needRoot(t, "for network namespaces")
	need(t, "for network namespaces", "ip")
	if err := needTun(); err != nil {
		missing(t, "%v", err)
	}
	out := os.Getenv("HT_SOAK_OUT")
	if out == "" {
		out = t.TempDir()
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, transport := range []string{"tcp", "udp"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			soak(t, transport, total, out)
		})
	}
}

func soak(t *testing.T, transport string, total time.Duration, out string) {
	b := newFaultBed(t, transport, true)
	t.Cleanup(func() { // the relays' and the agent's logs, next to the samples
		ms, _ := filepath.Glob(filepath.Join(b.dir, "*.log"))
		for _, m := range ms {
			data, err := os.ReadFile(m)
			if err == nil {
				err = os.WriteFile(filepath.Join(out, transport+"-"+filepath.Base(m)), data, 0o644)
			}
			if err != nil {
				t.Logf("keeping %s: %v", filepath.Base(m), err)
			}
		}
	})
	b.waitConnected(30 * time.Second)
	b.mustFetch("before the soak")
	b.mustDownload(2<<20, 60*time.Second)
	baseline := b.settledUsage()
	t.Logf("soak over %s for %v: baseline %s", transport, total, baseline)

	// Shorter than five minutes, every phase shrinks alike (for a quick
	// look; the quiet check needs the phases long).
	scale := min(1.0, float64(total)/float64(5*time.Minute))
	var phases []soakPhase
	for at := time.Duration(0); at < total; {
		for _, p := range soakCycle {
			p.d = max(time.Duration(float64(p.d)*scale), 5*time.Second)
			if at >= total {
				break
			}
			phases = append(phases, p)
			at += p.d
		}
	}

	held := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     5 * time.Second, // under the relay's 10 s idle limit
		DialContext:         nsClient(b.nsR).Transport.(*http.Transport).DialContext,
	}}
	var (
		mu   sync.Mutex
		ops  []soakOp
		wg   sync.WaitGroup
		stop = make(chan struct{})
	)
	record := func(kind string, start time.Time, err error) {
		end := time.Now()
		if err != nil { // at the times the logs have
			t.Logf("%s from %s to %s failed: %v", kind, start.UTC().Format("15:04:05.000"), end.UTC().Format("15:04:05.000"), err)
		}
		mu.Lock()
		defer mu.Unlock()
		ops = append(ops, soakOp{kind: kind, start: start, end: end, err: err,
			hung: err != nil && (errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "hung"))})
	}
	worker := func(kind string, every, deadline time.Duration, op func(time.Duration) error) {
		defer wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			start := time.Now()
			record(kind, start, op(deadline))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}
	wg.Add(4)
	go worker("request", time.Second, time.Minute, b.fetch)
	go worker("request", time.Second, time.Minute, b.fetch)
	go worker("download 2 MiB", 3*time.Second, 2*time.Minute, func(d time.Duration) error { return b.download(2<<20, d) })
	go worker("8 calls on kept connections", 3*time.Second, time.Minute, func(d time.Duration) error {
		return keptCalls(held, b.rb.TokenURL("demo", 80, "/"), 8, d)
	})

	var samples []soakSample
	sample := func(phase int) {
		u, err := b.usage()
		samples = append(samples, soakSample{at: time.Now(), u: u, ok: err == nil, phase: phase})
	}
	began := time.Now()
	starts := make([]time.Time, len(phases))
	tick := time.NewTicker(5 * time.Second)
	for i, p := range phases {
		starts[i] = time.Now()
		// The phase's wire first: a restart opening a clean phase must
		// not happen under the last phase's loss (a lost handshake costs
		// a UDP hub WireGuard's 5 s retry).
		b.wire.set(p.imp)
		if p.restart != "" {
			b.restartRelay(p.restart == "SIGKILL")
		}
		end := time.NewTimer(p.d)
		sample(i)
	phase:
		for {
			select {
			case <-tick.C:
				sample(i)
			case <-end.C:
				break phase
			}
		}
	}
	tick.Stop()
	b.wire.set(impairment{})
	close(stop)
	wg.Wait()
	ended := time.Now()
	t.Logf("soak over %s: %d phases in %v, %d sessions; the wire: %s", transport, len(phases),
		ended.Sub(began).Round(time.Second), len(ops), b.wire.report())

	rows := soakTable(phases, starts, ended, ops)
	// The report is written whatever the checks below find, usage not
	// back included: it is what shows why.
	var final usage
	defer func() {
		if final == (usage{}) {
			var err error
			if final, err = b.usage(); err == nil {
				samples = append(samples, soakSample{at: time.Now(), u: final, ok: true, phase: len(phases) - 1})
			}
		}
		writeSoak(t, out, transport, baseline, final, phases, starts, rows, samples)
	}()
	b.waitConnected(2 * time.Minute)
	b.mustFetchWithin("after the soak", 2*time.Minute)
	// Go collects a quiet process every 2 minutes and then returns the
	// freed memory in the background: 3 minutes, not 2.
	back := b.waitUsageBack(baseline, 3*time.Minute)
	samples = append(samples, soakSample{at: time.Now(), u: back, ok: true, phase: len(phases) - 1})
	final = back
	t.Logf("soak over %s: after: %s", transport, final)

	// The promises: no hang anywhere; every session in a clean phase's
	// quiet end worked.
	for i, r := range rows {
		if r.hung > 0 {
			t.Errorf("phase %d (%s): %d sessions hung until their deadline: %s", i+1, phases[i].name, r.hung, r.firstErr)
		}
		if phases[i].imp == (impairment{}) && phases[i].d > soakQuiet && r.quietFailed > 0 {
			t.Errorf("phase %d (%s): %d of %d sessions failed in its last %v: %s", i+1, phases[i].name,
				r.quietFailed, r.quiet, soakQuiet, r.firstErr)
		}
	}
}

// keptCalls makes n GETs at once on c, whose connections are kept alive
// between rounds: sessions that live across calls.
func keptCalls(c *http.Client, url string, n int, deadline time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	errc := make(chan error, n)
	for range n {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
			resp, err := c.Do(req)
			if err != nil {
				errc <- err
				return
			}
			defer resp.Body.Close()
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				errc <- err
				return
			}
			if resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			errc <- err
		}()
	}
	var first error
	for range n {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// restartRelay ends the relay (SIGTERM, or SIGKILL) and starts it again
// with the same config and state.
func (b *faultBed) restartRelay(kill bool) {
	b.t.Helper()
	if kill {
		b.relay.kill()
	} else {
		b.relay.stop(b.t)
	}
	b.restarts++
	b.relay = start(b.t, b.dir, fmt.Sprintf("relay-%d", b.restarts), b.inNs(b.nsR, b.rb.Args(bins)...)...)
	poll.Until(b.t, 15*time.Second, "the restarted relay to listen", func() bool {
		if !b.relay.alive() {
			b.t.Fatalf("relay exited: %v\n%s", b.relay.err, b.relay.logText())
		}
		return strings.Contains(b.relay.logText(), testbed.RelayReady)
	})
}

type soakRow struct {
	ok, failed, hung, quiet, quietFailed int
	// cut counts the failed sessions that were under way when the relay
	// was restarted (at the start of a phase with a restart): they failed
	// for the restart, not for the phase they started in.
	cut      int
	firstErr string // the first failure not cut, else the first cut
}

// soakTable counts the sessions by the phase they started in.
func soakTable(phases []soakPhase, starts []time.Time, ended time.Time, ops []soakOp) []soakRow {
	rows := make([]soakRow, len(phases))
	var restarts []time.Time
	for i, p := range phases {
		if p.restart != "" {
			restarts = append(restarts, starts[i])
		}
	}
	cut := func(op soakOp) bool {
		for _, at := range restarts {
			if op.start.Before(at) && !op.end.Before(at) {
				return true
			}
		}
		return false
	}
	firstCut := make([]string, len(phases))
	defer func() {
		for i := range rows {
			if rows[i].firstErr == "" && firstCut[i] != "" {
				rows[i].firstErr = firstCut[i] + " (cut by a relay restart)"
			}
		}
	}()
	for _, op := range ops {
		i := sort.Search(len(starts), func(i int) bool { return starts[i].After(op.start) }) - 1
		if i < 0 {
			continue
		}
		end := ended
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		r := &rows[i]
		quiet := end.Sub(op.start) <= soakQuiet && op.end.Before(end)
		if quiet {
			r.quiet++
		}
		switch {
		case op.err == nil:
			r.ok++
			continue
		case op.hung:
			r.hung++
		}
		r.failed++
		if quiet {
			r.quietFailed++
		}
		what := op.kind + ": " + op.err.Error()
		switch {
		case cut(op):
			r.cut++
			if firstCut[i] == "" {
				firstCut[i] = what
			}
		case r.firstErr == "":
			r.firstErr = what
		}
	}
	return rows
}

// writeSoak writes what the soak saw: soak-T.csv (every sample),
// soak-T.svg (them as a chart) and soak-T.md (a table per phase).
func writeSoak(t *testing.T, dir, transport string, baseline, final usage, phases []soakPhase, starts []time.Time, rows []soakRow, samples []soakSample) {
	t.Helper()
	t0 := starts[0]
	var csv strings.Builder
	csv.WriteString("seconds,phase,agent_goroutines,agent_fds,agent_rss_kib,relay_goroutines,relay_fds,relay_rss_kib\n")
	for _, s := range samples {
		if !s.ok {
			fmt.Fprintf(&csv, "%.0f,%q,,,,,,\n", s.at.Sub(t0).Seconds(), phases[s.phase].name)
			continue
		}
		u := s.u
		fmt.Fprintf(&csv, "%.0f,%q,%d,%d,%d,%d,%d,%d\n", s.at.Sub(t0).Seconds(), phases[s.phase].name,
			u.agentG, u.agentFD, u.agentRSS, u.relayG, u.relayFD, u.relayRSS)
	}
	var md strings.Builder
	fmt.Fprintf(&md, "## Soak over the %s transport\n\n", transport)
	fmt.Fprintf(&md, "Baseline after the warm-up: %s.  \nAt the end: %s.\n\n", baseline, final)
	md.WriteString("| # | from | phase | sessions OK | failed | of them cut by a relay restart | hung | failed in the quiet end | first error |\n|---|---|---|---|---|---|---|---|---|\n")
	for i, r := range rows {
		quiet := "–"
		if phases[i].imp == (impairment{}) {
			quiet = fmt.Sprintf("%d of %d", r.quietFailed, r.quiet)
		}
		fmt.Fprintf(&md, "| %d | %s | %s | %d | %d | %d | %d | %s | %s |\n", i+1, starts[i].Sub(t0).Round(time.Second), phases[i].name,
			r.ok, r.failed, r.cut, r.hung, quiet, strings.ReplaceAll(truncate(r.firstErr, 120), "|", "/"))
	}
	fmt.Fprintf(&md, "\n![usage over the soak](soak-%s.svg)\n", transport)
	for name, content := range map[string]string{
		"soak-" + transport + ".csv": csv.String(),
		"soak-" + transport + ".md":  md.String(),
		"soak-" + transport + ".svg": soakChart(transport, t0, phases, starts, samples),
	} {
		writeFile(t, filepath.Join(dir, name), content)
	}
	t.Logf("soak over %s: written to %s", transport, filepath.Join(dir, "soak-"+transport+".{csv,md,svg}"))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// soakChart draws three panels — goroutines, descriptors, resident MiB —
// each with the agent's and the relay's line, over bands for the phases.
func soakChart(transport string, t0 time.Time, phases []soakPhase, starts []time.Time, samples []soakSample) string {
	const w, ph, top, left, gap = 900.0, 150.0, 30.0, 60.0, 40.0
	span := samples[len(samples)-1].at.Sub(t0).Seconds()
	x := func(at time.Time) float64 { return left + (w-left-10)*at.Sub(t0).Seconds()/max(span, 1) }
	panels := []struct {
		title        string
		agent, relay func(usage) float64
	}{
		{"goroutines", func(u usage) float64 { return float64(u.agentG) }, func(u usage) float64 { return float64(u.relayG) }},
		{"open descriptors", func(u usage) float64 { return float64(u.agentFD) }, func(u usage) float64 { return float64(u.relayFD) }},
		{"resident memory, MiB", func(u usage) float64 { return float64(u.agentRSS) / 1024 }, func(u usage) float64 { return float64(u.relayRSS) / 1024 }},
	}
	height := top + float64(len(panels))*(ph+gap)
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", w, height)
	fmt.Fprintf(&s, `<rect width="100%%" height="100%%" fill="white"/><text x="%.0f" y="16" font-size="13">Soak, %s transport: agent (blue) and relay (orange); shaded: a fault holds; | relay restarted</text>`+"\n", left, transport)
	for p, panel := range panels {
		y0 := top + float64(p)*(ph+gap)
		hi := 1.0
		for _, sm := range samples {
			if sm.ok {
				hi = max(hi, panel.agent(sm.u), panel.relay(sm.u))
			}
		}
		hi *= 1.15
		y := func(v float64) float64 { return y0 + ph - ph*v/hi }
		for i, phase := range phases {
			end := samples[len(samples)-1].at
			if i+1 < len(starts) {
				end = starts[i+1]
			}
			if phase.imp != (impairment{}) {
				fmt.Fprintf(&s, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#eee"><title>%s</title></rect>`+"\n",
					x(starts[i]), y0, x(end)-x(starts[i]), ph, phase.name)
			}
			if phase.restart != "" {
				fmt.Fprintf(&s, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#c00" stroke-dasharray="2,2"><title>relay %s</title></line>`+"\n",
					x(starts[i]), x(starts[i]), y0, y0+ph, phase.restart)
			}
		}
		fmt.Fprintf(&s, `<rect x="%.0f" y="%.1f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`+"\n", left, y0, w-left-10, ph)
		fmt.Fprintf(&s, `<text x="%.0f" y="%.1f">%s</text><text x="4" y="%.1f">%.0f</text><text x="4" y="%.1f">0</text>`+"\n",
			left+4, y0+12, panel.title, y0+10, hi, y0+ph)
		for c, line := range []func(usage) float64{panel.agent, panel.relay} {
			var pts []string
			for _, sm := range samples {
				if sm.ok {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(sm.at), y(line(sm.u))))
				}
			}
			fmt.Fprintf(&s, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", []string{"#1f77b4", "#ff7f0e"}[c], strings.Join(pts, " "))
		}
	}
	fmt.Fprintf(&s, `<text x="%.0f" y="%.0f">0</text><text x="%.0f" y="%.0f" text-anchor="end">%s</text>`+"\n",
		left, height-8, w-10, height-8, (time.Duration(span) * time.Second).String())
	s.WriteString("</svg>\n")
	return s.String()
}

// TestSoakTableCountsCutSessions: a session under way when the relay was
// restarted is counted as cut by the restart in the phase it started in,
// and the phase's first error is one that was not.
func TestSoakTableCountsCutSessions(t *testing.T) {
	t0 := time.Now()
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	phases := []soakPhase{{name: "loss"}, {name: "clean after relay SIGTERM", restart: "SIGTERM"}}
	starts := []time.Time{at(0), at(10)}
	ops := []soakOp{
		{kind: "download", start: at(8), end: at(10.1), err: errors.New("unexpected EOF")},
		{kind: "request", start: at(2), end: at(3), err: errors.New("EOF")},
		{kind: "request", start: at(4), end: at(5)},
		{kind: "request", start: at(10.05), end: at(10.06), err: errors.New("connection refused")},
	}
	rows := soakTable(phases, starts, at(20), ops)
	if r := rows[0]; r.ok != 1 || r.failed != 2 || r.cut != 1 || r.firstErr != "request: EOF" {
		t.Errorf("the loss phase: %+v, want 1 OK, 2 failed, 1 of them cut, first error the request's", r)
	}
	if r := rows[1]; r.failed != 1 || r.cut != 0 || r.firstErr != "request: connection refused" {
		t.Errorf("the restart's phase: %+v, want 1 failed, none cut", r)
	}
	only := soakTable(phases, starts, at(20), ops[:1])
	if r := only[0]; r.cut != 1 || r.firstErr != "download: unexpected EOF (cut by a relay restart)" {
		t.Errorf("a phase whose only failure was cut: %+v", r)
	}
}
