package e2e

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/bench"
	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/stats"
)

// TestStatsAgreeWithTheWire holds the agent's traffic record against what
// dumpcap captures on the agent's connection to the relay, IP and TCP
// headers included (bench.ReadStream): the tunnel's setup, an idle window
// with a TCP keepalive in it, and a download through the tunnel, each
// within 3 %. The agent's numbers are its status API's overhead_bytes
// while no user traffic has flowed, and at the end stats.json, which the
// agent writes as it stops.
func TestStatsAgreeWithTheWire(t *testing.T) {
	t.Parallel()
	need(t, "to capture the agent's connection", "dumpcap", "tshark")
	files := t.TempDir()
	const size = 4 << 20
	writeRandomFile(t, files, "big.bin", size)
	s := newHub(t, setupOpts{filesDir: files})
	capt, err := bench.StartCapture(s.dir, "agent", s.agentPort)
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Stop()
	s.startAgent(agentOpts{})
	s.waitConnected(15 * time.Second)

	// overheadStable waits until overhead_bytes stays the same for a
	// second (WireGuard's confirming keepalive may be held that long),
	// and returns it with the time it was first seen.
	overheadStable := func(what string, after uint64, quiet time.Duration) (uint64, time.Time) {
		var last uint64
		var since time.Time
		poll.Until(t, 150*time.Second, what, func() bool {
			st, err := s.status()
			if err != nil || st.OverheadBytes <= after {
				return false
			}
			if st.OverheadBytes != last {
				last, since = st.OverheadBytes, time.Now()
				return false
			}
			return time.Since(since) > quiet
		})
		return last, since
	}
	// The setup, then the relay's keys and a release check through the
	// tunnel, at once; then nothing.
	// WireGuard sends a keepalive 10 s after it last received data, if
	// it sent nothing since.
	setup, tA := overheadStable("the tunnel's setup to end", 0, 12*time.Second)
	// A TCP keepalive probe comes after 90 s without traffic, and its
	// answer within a millisecond: two bare segments, 104 B over IPv4
	// with timestamps (80, 120 or 144 B otherwise). Other exchanges may
	// come first (a WireGuard keepalive and its ACK: 138 B); the window
	// holds them too.
	idle, tB := setup, tA
	for deadline := time.Now().Add(200 * time.Second); ; {
		prev := idle
		idle, tB = overheadStable("a TCP keepalive on the idle connection", prev, 1200*time.Millisecond)
		if d := idle - prev; d == 104 || d == 80 || d == 120 || d == 144 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TCP keepalive (two bare segments) on the idle connection within 200 s")
		}
	}

	code, body, err := s.get(s.url("http", "demo", 80, "/files/big.bin"))
	if err != nil || code != 200 || len(body) != size {
		t.Fatalf("download through the tunnel: %d, %d bytes, %v", code, len(body), err)
	}
	s.agent.stop(t)
	rec, err := stats.ReadFile(filepath.Join(s.dir, stats.FileName))
	if err != nil {
		t.Fatal(err)
	}
	// dumpcap may lag on a busy machine, and drops what it has not read
	// when stopped: stop it once the file holds the agent's FIN. It
	// writes its file in blocks, though, so if the FIN has not shown
	// within 30 s it is stopped anyway, which writes what it holds, and
	// the file is read once more below.
	bench.WaitFor(30*time.Second, "the capture to hold the agent's FIN", func() (bool, error) {
		st, err := bench.ReadStream(capt.File, s.agentPort)
		return err == nil && agentFIN(st) >= 0, nil
	})
	if err := capt.Stop(); err != nil {
		t.Fatal(err)
	}
	if f := os.Getenv("HT_KEEP_CAPTURE"); f != "" {
		b, _ := os.ReadFile(capt.File)
		os.WriteFile(f, b, 0o644)
	}
	stream, err := bench.ReadStream(capt.File, s.agentPort)
	if err != nil {
		t.Fatal(err)
	}
	// The agent reads its socket's counters just before it closes it:
	// its FIN and what follows are not its to count.
	fin := agentFIN(stream)
	if fin < 0 {
		var tail string
		if n := len(stream.Packets); n > 0 {
			last := stream.Packets[n-1].Time
			tail = stream.Describe(last.Add(-2*time.Second), last.Add(time.Millisecond))
		}
		t.Fatalf("the capture has no FIN from the agent. dumpcap said:\n%s\nthe capture's last 2 s:\n%s", capt.Output(), tail)
	}
	end := stream.Packets[fin].Time
	start := stream.Packets[0].Time
	if probes := stream.Probes(tA, tB); len(probes) == 0 {
		t.Errorf("no TCP keepalive in the idle window; what the capture holds there:\n%s", stream.Describe(tA, tB))
	}
	// The relay's segments sent twice (a tail loss probe or a spurious
	// retransmission on a busy machine) reach the agent twice, but its
	// kernel counts their payload once (tcpi_bytes_received): the
	// capture's bytes less those are what the agent can count.
	wire := func(from, to time.Time) uint64 {
		return uint64(stream.Window(from, to).IPBytes - stream.Resent(from, to, false))
	}

	if rec.Total.User() < size {
		t.Errorf("user traffic %d B, want at least the %d B downloaded", rec.Total.User(), size)
	}
	for _, c := range []struct {
		what        string
		agent, wire uint64
		from, to    time.Time
	}{
		{"tunnel setup, keys and release check", setup, wire(start, tA), start, tA},
		{"idle window with a keepalive", idle - setup, wire(tA, tB), tA, tB},
		{"download", rec.Total.Total() - idle, wire(tB, end), tB, end},
		{"whole connection", rec.Total.Total(), wire(start, end), start, end},
	} {
		off := math.Abs(float64(c.agent)-float64(c.wire)) / float64(c.wire)
		t.Logf("%s: agent %d B, capture %d B (%.2f %% apart; %d B sent again by the relay left out)", c.what, c.agent, c.wire, off*100, stream.Resent(c.from, c.to, false))
		if off > 0.03 {
			t.Errorf("%s: the agent counted %d B, the capture %d B: %.1f %% apart, want within 3 %%", c.what, c.agent, c.wire, off*100)
			if w := stream.Window(c.from, c.to); w.Packets < 200 {
				t.Logf("the capture in that window:\n%s", stream.Describe(c.from, c.to))
			}
		}
	}
	// An idle day: the probes and their answers, one every 90 s.
	for _, p := range stream.Probes(tA, tB) {
		t.Logf("TCP keepalive at %s: %d B with its answer, %.0f KB a day at one per 90 s", p.At.Format(time.TimeOnly), p.Bytes, float64(p.Bytes)*86400/90/1000)
	}
	if len(rec.Events) < 2 || rec.Events[0].Kind != stats.EventStart || rec.Events[len(rec.Events)-1].Kind != stats.EventStop {
		t.Errorf("events %+v, want the start, the connection and the stop", rec.Events)
	}
}

// agentFIN is the index of the agent's first FIN in st, or -1. A reset
// ends the connection as well: the kernel sends one instead of the FIN
// when data the agent had not read was still in its socket as it closed.
func agentFIN(st *bench.Stream) int {
	for i, p := range st.Packets {
		if p.Up && p.Flags&(0x01|0x04) != 0 { // FIN or RST
			return i
		}
	}
	return -1
}

// TestStatsSurviveARestart stops and starts the agent: the totals it
// counted go on from where they were.
func TestStatsSurviveARestart(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{})
	s.startAgent(agentOpts{})
	s.waitConnected(15 * time.Second)
	s.mustGetWebUI()
	s.agent.stop(t)
	file := filepath.Join(s.dir, stats.FileName)
	first, err := stats.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if first.Total.User() == 0 || first.Total.Overhead() == 0 {
		t.Fatalf("after one request: %+v, want user traffic and overhead", first.Total)
	}
	s.startAgent(agentOpts{}) // the same config folder
	s.waitConnected(15 * time.Second)
	s.agent.stop(t)
	second, err := stats.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if second.Total.User() < first.Total.User() || second.Total.Overhead() <= first.Total.Overhead() {
		t.Errorf("after a restart: %+v, want at least %+v and more overhead", second.Total, first.Total)
	}
	starts := 0
	for _, e := range second.Events {
		if e.Kind == stats.EventStart {
			starts++
		}
	}
	if starts != 2 {
		t.Errorf("%d start events, want 2: %+v", starts, second.Events)
	}
}

// TestBrowserStats is the statistics page in Chromium, served by the real
// agent from a day of synthetic counters (stats.SyntheticDay) written as
// stats.json before it starts, with a 500 MB plan, behind the settings
// panel's CCU session check (ccusim is the CCU): refused without a
// session, shown with one.
func TestBrowserStats(t *testing.T) {
	t.Parallel()
	b := needBrowser(t)
	s := newHub(t, setupOpts{})
	now := time.Now()
	rec := stats.SyntheticDay(now, time.Local)
	data, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(s.dir, stats.FileName), string(data))
	s.startAgent(agentOpts{dns: "[stats]\nplan_mb = 500\n\n[panel]\nrega = \"http://" + s.sim["script"] + "\"\n"})
	s.waitConnected(15 * time.Second)

	// What the page must say: this month's use by the record as it was
	// written (the agent adds only its own overhead since).
	r := stats.New(stats.Config{File: filepath.Join(s.dir, stats.FileName), PlanMB: 500})
	month := r.Report().Month
	hoursWithUser := 0
	for _, h := range r.Report().Hours {
		if h.User() > 0 {
			hoursWithUser++
		}
	}
	base := fmt.Sprintf("http://%s/addons/hubtunnel/panel/stats", s.uiAddr)
	for _, u := range []string{base, base + "?sid=@AbCdEfGhIj@", fmt.Sprintf("http://%s/addons/hubtunnel/panel/api/stats", s.uiAddr)} {
		if code, _, err := s.get(u); err != nil || code != http.StatusForbidden {
			t.Errorf("GET %s without a live session: %d, %v; want 403", u, code, err)
		}
	}
	resp, err := http.Post("http://"+s.sim["webui"]+"/login.htm", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	sid, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	b.run(t, "stats", map[string]string{
		"HT_URL":           base + "?sid=" + url.QueryEscape(string(sid)),
		"HT_USER_HOURS":    fmt.Sprint(hoursWithUser),
		"HT_MONTH_USER_DE": stats.Human(month.User(), "de"),
		"HT_MONTH_USER_EN": stats.Human(month.User(), "en"),
	},
		"the page with a day of counters: ",
		"the page speaks de",
		"48 hourly bars",
		fmt.Sprintf("%d hours with user traffic", hoursWithUser),
		"31 daily bars",
		"the plan line and",
		"this month's usage reads "+stats.Human(month.User(), "de"),
		"the events list the reconnect",
		"screenshot",
		"the page speaks en",
		"screenshot",
		"phone width",
		"screenshot",
	)
	if _, err := os.Stat(filepath.Join(b.artifacts, "stats-de.png")); err != nil {
		t.Error(err)
	}
}
