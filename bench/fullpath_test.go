package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/agent"
	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/internal/loopback"
	"github.com/hubtunnel/hubtunnel/relay"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// BenchmarkFullPath moves bulk data through the whole data path in this one
// process: client → relay.Server (public port 80, netstack, WireGuard) →
// the agent's TCP connection on loopback → agent.Agent (WireGuard, firewall,
// netstack, portmap) → BulkServer. It is the model of the path that `go test
// -cpuprofile/-memprofile` can see whole; make bench runs it for the
// profile. Goroutines carry pprof labels by side (relay, agent, server,
// client): go tool pprof -tagfocus side=agent … shows one end alone.
//
// Unlike the real binaries, both ends share one Go runtime (GOMAXPROCS
// procs for the two), and the agent runs without its memory limit.
func BenchmarkFullPath(b *testing.B) { benchFullPath(b, "tcp") }

// BenchmarkFullPathUDP is BenchmarkFullPath with the agent on the UDP
// transport: plain WireGuard over UDP on loopback to the relay's
// agent_listen_udp, tunnel MTU 1420.
func BenchmarkFullPathUDP(b *testing.B) { benchFullPath(b, "udp") }

func benchFullPath(b *testing.B, transport string) {
	p := newInProcess(b, transport)
	for _, c := range []struct {
		name    string
		streams int
		dir     Direction
	}{
		{"download-1", 1, Download},
		{"download-8", 8, Download},
		{"upload-1", 1, Upload},
	} {
		b.Run(c.name, func(b *testing.B) { p.bench(b, c.streams, c.dir) })
	}
}

// inProcess is a relay, an agent and a bulk server in this process.
type inProcess struct {
	relay  *relay.Server
	agent  *agent.Agent
	bulk   *BulkServer
	public string // the relay's public port 80
	auth   string // the Authorization header with hub demo's token
}

func labeled(side string, f func()) {
	pprof.Do(context.Background(), pprof.Labels("side", side), func(context.Context) { f() })
}

func newInProcess(b testing.TB, transport string) *inProcess {
	b.Helper()
	dir := b.TempDir()
	ports := &loopback.Ports{}
	p := &inProcess{}
	var err error
	labeled("server", func() { p.bulk, err = NewBulkServer() })
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.bulk.Close)

	// The relay and the agent run from the same config files their
	// binaries read.
	hub, err := testbed.NewHub("demo", testbed.TunnelIP(0), filepath.Join(dir, "demo.key"))
	if err != nil {
		b.Fatal(err)
	}
	rc, err := testbed.NewRelay(ports, dir, "relay", testbed.RelayOptions{UDP: transport == "udp"}, []testbed.Hub{hub})
	if err != nil {
		b.Fatal(err)
	}
	quiet := logger.Discard
	if testing.Verbose() {
		quiet = b.Logf
	}
	labeled("relay", func() { p.relay, err = rc.StartServer("bench", quiet) })
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.relay.Close() })
	p.public, p.auth = rc.Public(80), rc.AuthHeader("demo")

	ac, err := testbed.NewAgent(ports, filepath.Join(dir, "agent-demo.toml"), rc, hub, testbed.AgentSpec{Transport: transport, Targets: map[int]string{80: p.bulk.Addr()}})
	if err != nil {
		b.Fatal(err)
	}
	acfg, err := agent.LoadConfig(ac.Conf)
	if err != nil {
		b.Fatal(err)
	}
	labeled("agent", func() {
		p.agent = agent.New(acfg, "bench", quiet)
		err = p.agent.Start()
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.agent.Close() })
	err = WaitFor(15*time.Second, "the in-process agent to connect", func() (bool, error) {
		return p.agent.Status().State == "connected", nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// op is the data one benchmark operation moves.
const op = 1 << 20

func (p *inProcess) bench(b *testing.B, streams int, dir Direction) {
	b.SetBytes(op)
	b.ReportAllocs()
	defer reportCPU(b)() // per MiB moved: all sides together
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("side", "client")))
	if streams == 1 {
		c := p.dial(b, dir)
		defer c.Close()
		buf := make([]byte, chunk)
		for b.Loop() {
			p.move(b, c, dir, buf)
		}
		return
	}
	b.SetParallelism((streams + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.RunParallel(func(pb *testing.PB) {
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("side", "client")))
		c := p.dial(b, dir)
		defer c.Close()
		buf := make([]byte, chunk)
		for pb.Next() {
			p.move(b, c, dir, buf)
		}
	})
}

// dial opens a stream through the relay and reads past the response head
// of a download.
func (p *inProcess) dial(b testing.TB, dir Direction) net.Conn {
	c, err := net.DialTimeout("tcp", p.public, 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	if dir == Upload {
		// A body the length of the whole run: the relay reads HTTP, and a
		// request without a length has no body.
		fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: demo.localhost\r\nAuthorization: %s\r\nContent-Length: %d\r\n\r\n", p.auth, int64(1)<<40)
		return c
	}
	fmt.Fprintf(c, "GET /down HTTP/1.1\r\nHost: demo.localhost\r\nAuthorization: %s\r\n\r\n", p.auth)
	// The relay writes its own response head: read up to its end.
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("download through the relay: %v, %v", resp, err)
	}
	return &bufferedConn{Conn: c, r: br}
}

// bufferedConn reads what its reader has buffered past the head first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// move transfers op bytes on c.
func (p *inProcess) move(b testing.TB, c net.Conn, dir Direction, buf []byte) {
	for n := 0; n < op; {
		var k int
		var err error
		if dir == Upload {
			k, err = c.Write(buf[:min(len(buf), op-n)])
		} else {
			k, err = c.Read(buf[:min(len(buf), op-n)])
		}
		if err != nil {
			b.Error(err)
			return
		}
		n += k
	}
}

// TestFullPathModel: the in-process model that make bench profiles moves
// data both ways through the relay, over each transport. (The benchmark
// itself runs only in make bench.)
func TestFullPathModel(t *testing.T) {
	for _, transport := range []string{"tcp", "udp"} {
		t.Run(transport, func(t *testing.T) {
			p := newInProcess(t, transport)
			buf := make([]byte, chunk)
			for _, dir := range []Direction{Download, Upload} {
				c := p.dial(t, dir)
				p.move(t, c, dir, buf)
				c.Close()
			}
		})
	}
}

// BenchmarkFullPathRequest makes small requests (GET /small, "ok") through
// the whole path in this one process, on kept-alive connections: "serial"
// one after another on one connection (ns/op is the round trip), and
// "parallel-16" on 16 at once (CPU per request). go test -cpuprofile
// -tagfocus side=agent shows what a request costs the agent.
func BenchmarkFullPathRequest(b *testing.B) {
	p := newInProcess(b, "tcp")
	call := func(b *testing.B, c *http.Client) {
		req, _ := http.NewRequest("GET", "http://"+p.public+"/small", nil)
		req.Host = "demo.localhost"
		req.Header.Set("Authorization", p.auth)
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("GET /small: %d %v", resp.StatusCode, err)
		}
	}
	client := func() *http.Client {
		return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
	}
	b.Run("serial", func(b *testing.B) {
		defer reportCPU(b)()
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("side", "client")))
		c := client()
		defer c.CloseIdleConnections()
		for b.Loop() {
			call(b, c)
		}
	})
	b.Run("parallel-16", func(b *testing.B) {
		defer reportCPU(b)()
		b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) {
			pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("side", "client")))
			c := client()
			defer c.CloseIdleConnections()
			for pb.Next() {
				call(b, c)
			}
		})
	})
}

// reportCPU reports the process's CPU time (user and system, all sides
// and the runtime) per operation as cpu-µs/op: unlike ns/op, it does not
// grow when other processes share the machine. Call the function it
// returns when the benchmark ends.
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((processCPU()-start).Microseconds())/float64(b.N), "cpu-µs/op")
		}
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
