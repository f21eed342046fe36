package bench

import (
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testStream parses testdata/agent-conn.fields (see TestParseStream).
func testStream(t *testing.T) *Stream {
	t.Helper()
	text, err := os.ReadFile("testdata/agent-conn.fields")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseStream(string(text), 44453)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testdata/agent-conn.fields is tshark's field output (ReadStream) for a real
// capture of an agent connection to relay port 44453: setup, one TCP
// keepalive exchange, a request 122 s later that made the agent rekey, and
// the relay's passive keepalive 10 s after it.
func TestParseStream(t *testing.T) {
	s := testStream(t)
	at := func(sec, nsec int64) time.Time { return time.Unix(sec, nsec) }
	start := s.Packets[0].Time

	setup := s.Window(start, at(1795461406, 600000000))
	if setup.Packets != 11 || setup.IPBytes != 985 || setup.Frame != 985+11*14 {
		t.Errorf("setup = %+v, want 11 packets, 985 B", setup)
	}
	var types []byte
	for _, f := range s.Frames[:4] {
		types = append(types, f.Type)
	}
	if want := []byte{0xA0, 1, 0xA0, 2}; string(types) != string(want) {
		t.Errorf("first frame types = %x, want %x (agent Hello, initiation, relay Hello, response)", types, want)
	}

	idle := s.Window(at(1795461407, 0), at(1795461528, 0))
	if idle.Packets != 2 || idle.IPBytes != 104 {
		t.Errorf("TCP keepalive exchange = %+v, want 2 packets, 104 B", idle)
	}
	probes := s.Probes(start, at(1795461600, 0))
	if len(probes) != 1 || !probes[0].FromAgent || probes[0].Bytes != 104 || probes[0].At != at(1795461496, 576040074) {
		t.Errorf("Probes = %+v, want the agent's one at 1795461496.576040074, 104 B with its answer", probes)
	}

	hs, err := s.HandshakeAfter(at(1795461528, 0))
	if err != nil {
		t.Fatal(err)
	}
	// initiation 202 B, its ACK 52 B, response 146 B, confirming keepalive 86 B.
	if hs.Initiator != "agent" || hs.Packets != 4 || hs.IPBytes != 486 || hs.FrameBytes != 150+94+34 || hs.Messages != 202+146 {
		t.Errorf("rekey = %+v, want the agent's, 4 packets, 486 B, frames 278 B", hs)
	}
	if _, err := s.HandshakeAfter(at(1795461600, 0)); err == nil {
		t.Error("HandshakeAfter the last handshake found one")
	}
}

func TestParseStreamRejects(t *testing.T) {
	for _, text := range []string{
		"",
		"1.0,1,2,3",
		"1.0,34342,44453,60,74,0,1,0,0x0002,zz",
		"1.0,34342,44453,60,74,3,1,0,0x0018,00",
	} {
		if _, err := ParseStream(text, 44453); err == nil {
			t.Errorf("ParseStream(%q) succeeded", text)
		}
	}
}

func TestQuantile(t *testing.T) {
	var l Latencies
	for i := 100; i >= 1; i-- {
		l = append(l, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0, time.Millisecond}, {0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}} {
		if got := l.Quantile(c.q); got != c.want {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
}

func TestIdleModel(t *testing.T) {
	t0 := time.Unix(1795461496, 0)
	probes := []Probe{
		{FromAgent: true, At: t0, Bytes: 104},
		{FromAgent: true, At: t0.Add(90 * time.Second), Bytes: 104},
		{FromAgent: true, At: t0.Add(180 * time.Second), Bytes: 104},
		{FromAgent: false, At: t0.Add(200 * time.Second), Bytes: 104},
	}
	got, note := idleModel(probes)
	want := 104*86400/90.0 + 104*86400/300.0 // 99,840 + 29,952
	if got < want-1 || got > want+1 {
		t.Errorf("idleModel = %.0f B/day, want %.0f (%s)", got, want, note)
	}
	if got, _ := idleModel(nil); got != 0 {
		t.Errorf("idleModel(nil) = %v, want 0", got)
	}
}

// TestIdlePerDay: the test capture's request (19:18:48.509, 2756 B with
// the relay's passive keepalive 10 s later and its ACK, summed by hand)
// stands for the agent's daily release check in a window from 19:17:00 to
// 19:19:30 that also holds one keepalive probe (104 B at 19:18:16). As a
// check it counts once a day, on top of the probe model; unnamed, it is
// scaled with the window like everything else.
func TestIdlePerDay(t *testing.T) {
	s := testStream(t)
	day := s.Packets[0].Time.Truncate(24 * time.Hour)
	at := func(h, m, sec, ms int) time.Time {
		return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second + time.Duration(ms)*time.Millisecond)
	}
	from, to, checkAt := at(19, 17, 0, 0), at(19, 19, 30, 0), at(19, 18, 48, 509)
	win := to.Sub(from).Seconds()

	perDay, naive, check, _ := idlePerDay(s, from, to, checkAt)
	probeModel := 104 * 86400 / 90.0 // one agent probe, at its configured 90 s
	if check != 2756 || naive != 104*86400/win || perDay != max(104*86400/win, probeModel)+2756 {
		t.Errorf("with the check: perDay %.0f, naive %.0f, check %d; want %.0f, %.0f, 2756",
			perDay, naive, check, max(104*86400/win, probeModel)+2756, 104*86400/win)
	}
	perDay, naive, check, _ = idlePerDay(s, from, to, time.Time{})
	if check != 0 || naive != (104+2756)*86400/win || perDay != naive {
		t.Errorf("without: perDay %.0f, naive %.0f, check %d; want the window scaled, %.0f", perDay, naive, check, (104+2756)*86400/win)
	}
	// A check whose span holds the probe leaves the probe to the model.
	_, _, check, _ = idlePerDay(s, from, to, at(19, 18, 10, 0))
	if check != 0 {
		t.Errorf("a check span holding only the probe: check %d B, want 0", check)
	}
}

// TestResent: a segment sent again (whole or in part) counts its repeated
// payload once, in its direction only; a keepalive probe (one number
// below the next, no payload) and the SYN count nothing.
func TestResent(t *testing.T) {
	s := testStream(t)
	all0, all1 := s.Packets[0].Time, s.Packets[len(s.Packets)-1].Time.Add(time.Second)
	if up, down := s.Resent(all0, all1, true), s.Resent(all0, all1, false); up != 0 || down != 0 {
		t.Fatalf("a capture without retransmissions: Resent %d up, %d down; want 0", up, down)
	}
	// The relay's first data segment, sent again 1 ms later, and a
	// third copy that carries 10 more bytes beyond it.
	first := -1
	for i, p := range s.Packets {
		if !p.Up && p.TCPLen > 20 {
			first = i
			break
		}
	}
	if first < 0 {
		t.Fatal("no data segment from the relay in the capture")
	}
	p := s.Packets[first]
	again := p
	again.Time = p.Time.Add(time.Millisecond)
	longer := again
	longer.TCPLen += 10
	longer.Time = again.Time.Add(time.Millisecond)
	pk := append([]Packet{}, s.Packets[:first+1]...)
	pk = append(pk, again, longer)
	pk = append(pk, s.Packets[first+1:]...)
	// The relay's next segment then carries those 10 bytes a third time.
	r := &Stream{Packets: pk}
	if got := r.Resent(all0, all1, false); got != 2*p.TCPLen+10 {
		t.Errorf("two copies of a %d-byte segment, one with 10 bytes more: Resent %d, want %d", p.TCPLen, got, 2*p.TCPLen+10)
	}
	if got := r.Resent(all0, all1, true); got != 0 {
		t.Errorf("the agent's direction: Resent %d, want 0", got)
	}
	if got := r.Resent(all0, p.Time.Add(time.Millisecond/2), false); got != 0 {
		t.Errorf("a window that ends before the copies: Resent %d, want 0", got)
	}
}

func TestDumpcapDropped(t *testing.T) {
	for _, c := range []struct {
		out         string
		drop, total int
	}{
		{"Capturing on 'Loopback: lo'\nFile: /tmp/x.pcapng\nPackets captured: 33\nPackets received/dropped on interface 'Loopback: lo': 33/259 (pcap:259/dumpcap:0/flushed:0/ps_ifdrop:0) (11.3%)\n", 259, 292},
		{"Packets received/dropped on interface 'lo': 168/0 (pcap:0/dumpcap:0/flushed:0/ps_ifdrop:0) (100.0%)", 0, 168},
		{"Capturing on 'Loopback: lo'\nFile: /tmp/x.pcapng\n", 0, 0}, // still running
		{"Packets received/dropped on interface 'lo': x/y", 0, 0},
	} {
		if d, n := dumpcapDropped(c.out); d != c.drop || n != c.total {
			t.Errorf("dumpcapDropped(%q) = %d, %d; want %d, %d", c.out, d, n, c.drop, c.total)
		}
	}
}

// TestCaptureSaysWhenItDropped stops dumpcap (SIGSTOP, as a busy machine
// would keep it from running) while bytes cross loopback on the captured
// port: 8 MiB fit its buffer and the capture holds them all; 160 MiB do
// not, and Stop says it dropped packets rather than leave a short file.
func TestCaptureSaysWhenItDropped(t *testing.T) {
	if _, err := exec.LookPath("dumpcap"); err != nil {
		t.Skip("dumpcap is not installed (scripts/deps.sh installs it)")
	}
	for _, c := range []struct {
		size     int
		wantDrop bool
	}{{8 << 20, false}, {160 << 20, true}} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan int64, 1)
		go func() {
			conn, err := ln.Accept()
			if err != nil {
				got <- -1
				return
			}
			n, _ := io.Copy(io.Discard, conn)
			conn.Close()
			got <- n
		}()
		port := ln.Addr().(*net.TCPAddr).Port
		capt, err := StartCapture(t.TempDir(), "blast", port)
		if err != nil {
			t.Fatal(err)
		}
		capt.cmd.Process.Signal(syscall.SIGSTOP)
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Write(make([]byte, c.size)); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if n := <-got; n != int64(c.size) {
			t.Fatalf("the receiver got %d B of %d", n, c.size)
		}
		ln.Close()
		capt.cmd.Process.Signal(syscall.SIGCONT)
		// dumpcap loses what it has not read when stopped, uncounted,
		// and reads its buffer in spurts: let it write the buffer out
		// first (no growth for a second).
		var last int64 = -1
		var grew time.Time
		WaitFor(10*time.Second, "dumpcap's file to stop growing", func() (bool, error) {
			fi, err := os.Stat(capt.File)
			if err != nil {
				return false, err
			}
			if fi.Size() != last {
				last, grew = fi.Size(), time.Now()
			}
			return time.Since(grew) >= time.Second, nil
		})
		err = capt.Stop()
		t.Logf("%d MiB while dumpcap was stopped: %v; dumpcap said: %s", c.size>>20, err, capt.Output())
		if c.wantDrop && (err == nil || !strings.Contains(err.Error(), "dropped")) {
			t.Errorf("%d MiB: Stop = %v, want it to say the capture dropped packets", c.size>>20, err)
		}
		if !c.wantDrop && (err != nil || last < int64(c.size)) {
			t.Errorf("%d MiB: Stop = %v and a file of %d B, want the buffer to have held them all", c.size>>20, err, last)
		}
	}
}
