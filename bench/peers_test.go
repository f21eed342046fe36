package bench

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// wrk 4.1's summary, as Debian's wrk prints it.
const wrkOut = `Running 5s test @ http://127.0.0.1:40123/small
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.41ms    1.02ms  21.30ms   89.12%
    Req/Sec    10.45k     1.10k   12.80k    71.00%
  104012 requests in 5.00s, 7.44MB read
Requests/sec:  20795.31
Transfer/sec:      1.49MB
`

func TestParseWrkReadsRequestsAndRate(t *testing.T) {
	r, err := ParseWrk(wrkOut)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 104012 || r.PerSec != 20795.31 {
		t.Errorf("ParseWrk = %+v, want 104012 requests, 20795.31/s", r)
	}
}

func TestParseWrkRejectsErrorsAndNonOK(t *testing.T) {
	for _, extra := range []string{
		"  Socket errors: connect 0, read 3, write 0, timeout 0\n",
		"  Non-2xx or 3xx responses: 104012\n",
	} {
		out := strings.Replace(wrkOut, "Requests/sec", extra+"Requests/sec", 1)
		if _, err := ParseWrk(out); err == nil || !strings.Contains(err.Error(), strings.TrimSpace(extra)[:10]) {
			t.Errorf("ParseWrk with %q: err = %v, want it named", extra, err)
		}
	}
	if _, err := ParseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Error("ParseWrk without a summary: no error")
	}
}

// tshark's fields for the idle capture: a TCP keepalive exchange on relay
// port 7000 (agent port 51000), a UDP keepalive on 7001, and a segment on
// port 22.
const idleFields = `52,51000,7000,,
52,7000,51000,,
60,,,51002,7001
84,51500,22,,
`

func TestParseIdleSumsEachAgentConnection(t *testing.T) {
	got, err := ParseIdle(idleFields)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]int64{"tcp port 7000": 104, "udp port 7001": 60, "tcp port 22": 84, "udp port 7000": 0} {
		if got[k] != want {
			t.Errorf("%s: %d B, want %d", k, got[k], want)
		}
	}
	if _, err := ParseIdle("52,1,2\n"); err == nil {
		t.Error("ParseIdle of a short line: no error")
	}
}

func TestParseStatReadsPastACommandWithParentheses(t *testing.T) {
	line := "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 9 0 1000 0 0\n"
	st, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != 17 || st.utime != 250 || st.stime != 31 {
		t.Errorf("parseStat = %+v, want ppid 17, utime 250, stime 31", st)
	}
}

// sshd does its work in a process per connection: the relay's CPU must
// count the processes below the one the bench started.
func TestTreeCPUCountsTheChildrensWork(t *testing.T) {
	// The parent waits; its child spins until the parent's stdin closes
	// (at most 30 s).
	cmd := exec.Command("sh", "-c", `sh -c 'end=$(($(date +%s)+30)); while [ "$(date +%s)" -lt "$end" ]; do :; done' & read x; kill $!`)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	pid := cmd.Process.Pid
	poll.Until(t, 20*time.Second, "the child's CPU to show in TreeCPU", func() bool {
		d, err := TreeCPU(pid)
		return err == nil && d >= 200*time.Millisecond
	})
	own, err := CPUTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if tree, _ := TreeCPU(pid); own >= tree/2 {
		t.Errorf("CPUTime of the waiting parent = %v, TreeCPU = %v: the work is the child's", own, tree)
	}
}

// The latency client and wrk keep their connections: /small answers
// request after request on one connection.
func TestBulkServerKeepsSmallRequestsAlive(t *testing.T) {
	s, err := NewBulkServer()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i := range 3 {
		if _, err := c.Write([]byte("GET /small HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		status, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(status, "HTTP/1.1 200") {
			t.Fatalf("request %d: %q %v", i+1, status, err)
		}
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("request %d: %v", i+1, err)
			}
			if l == "\r\n" {
				break
			}
		}
		body := make([]byte, 2)
		if _, err := br.Read(body); err != nil || string(body) != "ok" {
			t.Fatalf("request %d: body %q %v", i+1, body, err)
		}
	}
}

// A peer that scripts/bench-deps.sh could not build gets a row that says so,
// with the build's last words.
func TestPeerBinSaysWhyAPeerIsNotBuilt(t *testing.T) {
	dir := t.TempDir()
	s := &peerSet{ru: &run{o: Options{PeerBins: dir}}}
	if _, err := s.peerBin("frp", "frps"); err == nil || !strings.HasPrefix(err.Error(), "frp: not built: ") || !strings.Contains(err.Error(), "bench-deps.sh") {
		t.Errorf("no binary, no log: err = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "frp.err"), []byte("go: downloading x\ngo build github.com/fatedier/frp/./cmd/frps@v0.66.0 failed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.peerBin("frp", "frps"); err == nil || err.Error() != "frp: not built: go build github.com/fatedier/frp/./cmd/frps@v0.66.0 failed" {
		t.Errorf("with a build log: err = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "frps"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if p, err := s.peerBin("frp", "frps"); err != nil || p != filepath.Join(dir, "frps") {
		t.Errorf("built: %q, %v", p, err)
	}
}

// The peers phase starts the groups picked, all without a pick, and the
// base build's only when there is one.
func TestStartsPeers(t *testing.T) {
	base := &Bins{Hubtunnel: "/old/hubtunnel"}
	for _, c := range []struct {
		groups []string
		base   *Bins
		want   map[string]bool
	}{
		{nil, nil, map[string]bool{"direct": true, "hubtunnel": true, "base": false, "frp": true}},
		{nil, base, map[string]bool{"hubtunnel": true, "base": true, "ssh": true}},
		{[]string{"hubtunnel", "base"}, base, map[string]bool{"direct": false, "hubtunnel": true, "base": true, "frp": false}},
		{[]string{"hubtunnel", "base"}, nil, map[string]bool{"hubtunnel": true, "base": false}},
	} {
		o := &Options{PeerGroups: c.groups, BaseBins: c.base}
		for group, want := range c.want {
			if got := o.startsPeers(group); got != want {
				t.Errorf("groups %v, base %v: starts %s: %v, want %v", c.groups, c.base != nil, group, got, want)
			}
		}
	}
}

// The peers phase judges each hubtunnel agent's peak RSS over its rounds
// against the bulk-load budget: a UDP agent once peaked at 49.2 MB there
// while the main phase's row passed.
func TestReportPeersJudgesTheAgentsPeakRSS(t *testing.T) {
	ru := &run{r: &Report{}}
	res := []*peerResult{
		{peer: &peer{name: peerHubTCP}, measured: true, rssPeak: 47_900_000},
		{peer: &peer{name: peerHubUDP}, measured: true, rssPeak: 48_100_000},
	}
	ru.reportPeers(res, peersTimes{}, "", nil)
	got := map[string]Row{}
	for _, row := range ru.r.Rows {
		if strings.HasPrefix(row.What, "agent RSS peak") {
			got[row.What] = row
		}
	}
	want := map[string]string{
		"agent RSS peak (VmHWM) over the rounds, " + peerHubTCP: "pass",
		"agent RSS peak (VmHWM) over the rounds, " + peerHubUDP: "FAIL",
	}
	if len(got) != len(want) {
		t.Fatalf("RSS rows %v; want one per transport", got)
	}
	for what, verdict := range want {
		if row := got[what]; row.Verdict != verdict || row.Budget != "≤ 48 MB" {
			t.Errorf("%q: %q, budget %q, %s; want %s against ≤ 48 MB", what, row.Value, row.Budget, row.Verdict, verdict)
		}
	}
}

// Added latency is a peer's p50 less direct's in the same round: without
// direct in a round (PEER_GROUPS without it) there is none, and the
// target is not judged on the whole p50.
func TestAddedLatencyNeedsDirect(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	row := func(withDirect bool) Row {
		t.Helper()
		res := []*peerResult{
			{peer: &peer{name: peerHubTCP}},
			{peer: &peer{name: peerSSH}},
		}
		for i, p50 := range []time.Duration{ms(0.45), ms(0.19)} {
			for range 3 {
				r := peerRound{p50: p50}
				if withDirect {
					r.addedP50, r.added = p50-ms(0.04), true
				}
				res[i].rounds = append(res[i].rounds, r)
			}
		}
		for _, p := range res {
			p.summarize()
		}
		ru := &run{r: &Report{}}
		ru.reportPeers(res, peersTimes{}, "", nil)
		for _, row := range ru.r.Rows {
			if strings.HasPrefix(row.What, "added p50") {
				return row
			}
		}
		t.Fatal("no added-p50 row")
		return Row{}
	}
	if r := row(true); r.Value != "0.410 ms against "+peerSSH+"'s 0.150 ms" || r.Verdict != "FAIL" {
		t.Errorf("with direct: %q %s; want 0.410 against 0.150 ms, FAIL", r.Value, r.Verdict)
	}
	if r := row(false); !strings.Contains(r.Value, "direct was not measured") {
		t.Errorf("without direct: %q %s; want not compared", r.Value, r.Verdict)
	}
}
