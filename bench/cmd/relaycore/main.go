// Command relaycore measures what the relay's side of a download costs in
// CPU per GB, for issue 18's question whether a relay on a kernel TUN would
// reach frp: the real hubrelay (its agent over the TCP transport, the
// download through its port 80), a bare wireguard-go relay on gVisor's
// netstack (hubtunnel's design, with nothing of the relay's own around it)
// and the same on a kernel TUN with the kernel's TCP behind it, and frps.
// scripts/relaycore.sh runs them alternated inside a network namespace of
// its own (a kernel TUN needs CAP_NET_ADMIN); BENCHMARKS.md has a result.
//
// The bare relays' hub is wireguard-go on gVisor's netstack serving zeros
// in 32 KiB writes as the agent's copy does (-write: the size of its
// segments follows them), over wireguard-go's UDP bind on the namespace's
// loopback with a tunnel MTU of 65,000: per packet as cheap as the TCP
// transport's 65,503, without its framing. An experiment, not part of the
// product: the fixed keys below are for a namespace's loopback only.
package main

import (
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/hubtunnel/hubtunnel/bench"
	"github.com/hubtunnel/hubtunnel/internal/loopback"
)

const (
	hubKey   = "a8c2b5f0e7a1d3c4b6e8f0a2c4e6a8c0b2d4f6a8c0e2a4c6e8a0b2d4f6a8c06a"
	relayKey = "b0d2f4a6c8e0a2c4e6a8b0d2f4a6c8e0a2c4e6a8b0d2f4a6c8e0a2c4e6a8b04b"

	hubUDP   = "127.0.0.1:51002"
	relayUDP = "127.0.0.1:51001"
	hubAddr  = "10.77.0.2:8000" // the bare hub's server, inside the tunnel
	relayIP  = "10.77.0.1"
	userAddr = "127.0.0.1:9000" // where the bare relays take downloads
	backend  = "127.0.0.1:8001" // frpc's target
)

func main() {
	mode := flag.String("mode", "", "hub, relay-netstack, relay-ktun, backend, fetch or hubrelay")
	size := flag.Int64("size", 1<<30, "bytes per download (all streams together)")
	streams := flag.Int("streams", 1, "fetch, hubrelay: parallel downloads")
	addr := flag.String("addr", userAddr, "fetch: where to download from")
	pid := flag.Int("pid", 0, "fetch: the relay process whose CPU is measured")
	name := flag.String("name", "", "fetch: what the relay is, for the line printed")
	bin := flag.String("bin", "bin", "hubrelay: folder with hubrelay and hubtunnel")
	mtu := flag.Int("mtu", 65000, "the bare relays' tunnel MTU")
	write := flag.Int("write", 32<<10, "hub: bytes per write into its netstack (the agent's copy writes 32 KiB)")
	closed := flag.Bool("closed", false, "hubrelay: the hub's server ends its answer by closing, with no length (as make bench's bulk server does), not with a Content-Length")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("relaycore " + *mode + ": ")
	switch *mode {
	case "hub":
		hub(*mtu, *size, *write)
	case "relay-netstack", "relay-ktun":
		bareRelay(*mode == "relay-ktun", *mtu)
	case "backend":
		ln, err := net.Listen("tcp", backend)
		check(err)
		serveZeros(ln, *size, *write)
	case "fetch":
		n, took, relayCPU, machine := measure(*pid, func() int64 { return fetch(*addr, *streams, *size) })
		report(*name, *streams, n, took, relayCPU, machine)
	case "hubrelay":
		realRelay(*bin, *streams, *size, *closed)
	default:
		log.Fatal("-mode: hub, relay-netstack, relay-ktun, backend, fetch or hubrelay")
	}
}

// hub is the bare relays' other end: wireguard-go on gVisor's netstack,
// serving size zeros to each connection to hubAddr.
func hub(mtu int, size int64, write int) {
	dev, tnet, err := netstack.CreateNetTUN([]netip.Addr{netip.MustParseAddrPort(hubAddr).Addr()}, nil, mtu)
	check(err)
	d := device.NewDevice(dev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, "hub: "))
	check(d.IpcSet(uapi(hubKey, relayKey, hubUDP, relayIP+"/32", relayUDP)))
	check(d.Up())
	ln, err := tnet.ListenTCPAddrPort(netip.MustParseAddrPort(hubAddr))
	check(err)
	serveZeros(ln, size, write)
}

// bareRelay is wireguard-go and nothing of the relay's own: each
// connection to userAddr is a download from the hub, copied as it comes.
func bareRelay(kernel bool, mtu int) {
	var dev tun.Device
	var dial func() (net.Conn, error)
	if kernel {
		var err error
		dev, err = tun.CreateTUN("ht0", mtu)
		check(err)
		for _, args := range [][]string{{"addr", "add", relayIP + "/24", "dev", "ht0"}, {"link", "set", "ht0", "up"}} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				log.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
		dial = func() (net.Conn, error) { return net.Dial("tcp", hubAddr) }
	} else {
		var tnet *netstack.Net
		var err error
		dev, tnet, err = netstack.CreateNetTUN([]netip.Addr{netip.MustParseAddr(relayIP)}, nil, mtu)
		check(err)
		dial = func() (net.Conn, error) { return tnet.DialTCPAddrPort(netip.MustParseAddrPort(hubAddr)) }
	}
	d := device.NewDevice(dev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, "relay: "))
	check(d.IpcSet(uapi(relayKey, hubKey, relayUDP, netip.MustParseAddrPort(hubAddr).Addr().String()+"/32", hubUDP)))
	check(d.Up())
	ln, err := net.Listen("tcp", userAddr)
	check(err)
	for {
		u, err := ln.Accept()
		check(err)
		go func() {
			defer u.Close()
			h, err := dial()
			if err != nil {
				log.Printf("dialling the hub: %v", err)
				return
			}
			defer h.Close()
			io.Copy(u, h)
		}()
	}
}

// uapi is wireguard-go's config of a device with key priv, listening on
// the port of self, and one peer.
func uapi(priv, peerPriv, self, allowed, endpoint string) string {
	return fmt.Sprintf("private_key=%s\nlisten_port=%s\npublic_key=%s\nallowed_ip=%s\nendpoint=%s\n",
		priv, self[strings.LastIndexByte(self, ':')+1:], public(peerPriv), allowed, endpoint)
}

func public(privHex string) string {
	priv, err := hex.DecodeString(privHex)
	check(err)
	pub, err := curve25519.X25519(priv, curve25519.Basepoint)
	check(err)
	return hex.EncodeToString(pub)
}

// serveZeros writes size zeros to each connection ln accepts, write bytes
// at a time.
func serveZeros(ln net.Listener, size int64, write int) {
	for {
		c, err := ln.Accept()
		check(err)
		go func() {
			defer c.Close()
			io.CopyBuffer(c, io.LimitReader(zeros{}, size), make([]byte, write))
		}()
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// fetch downloads size bytes from addr over streams connections at once
// and returns how many came.
func fetch(addr string, streams int, size int64) int64 {
	return inParallel(streams, size, func() io.ReadCloser {
		c, err := net.Dial("tcp", addr)
		check(err)
		return c
	})
}

// inParallel reads size/streams bytes from each of streams bodies that
// open gives, all at once, and returns how many came in all.
func inParallel(streams int, size int64, open func() io.ReadCloser) int64 {
	var total atomic.Int64
	var wg sync.WaitGroup
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := open()
			defer body.Close()
			n, _ := io.Copy(io.Discard, io.LimitReader(body, size/int64(streams)))
			total.Add(n)
		}()
	}
	wg.Wait()
	return total.Load()
}

// measure runs download and returns what it moved, how long it took, and
// the CPU time process pid and the whole machine spent meanwhile.
func measure(pid int, download func() int64) (n int64, took, relayCPU, machine time.Duration) {
	c0, err := bench.CPUTime(pid)
	check(err)
	m0 := machineCPU()
	t0 := time.Now()
	n = download()
	took = time.Since(t0)
	c1, err := bench.CPUTime(pid)
	check(err)
	return n, took, c1 - c0, machineCPU() - m0
}

func report(name string, streams int, n int64, took, relayCPU, machine time.Duration) {
	gb := float64(n) / 1e9
	fmt.Printf("%-14s %d stream(s) %5d MB in %.2f s (%4.0f MB/s)  relay CPU %.3f s/GB  machine CPU %.3f s/GB\n",
		name, streams, n>>20, took.Seconds(), float64(n)/1e6/took.Seconds(), relayCPU.Seconds()/gb, machine.Seconds()/gb)
}

// machineCPU is the time the machine's CPUs were busy (/proc/stat: all
// but idle and iowait), softirqs wherever they ran included: a kernel TUN's
// TCP may be worked on outside the relay's own time.
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	check(err)
	line, _, _ := strings.Cut(string(b), "\n")
	var busy int
	for i, v := range strings.Fields(line)[1:] {
		n, err := strconv.Atoi(v)
		check(err)
		if i != 3 && i != 4 && i < 8 { // not idle, iowait, or guest (counted in user already)
			busy += n
		}
	}
	return time.Duration(busy) * 10 * time.Millisecond // USER_HZ
}

// realRelay runs hubrelay and a hubtunnel agent over the TCP transport,
// the agent's port 80 pointing at a server of zeros, and downloads through
// the relay's port 80 as a user would: twice, the second one reported.
// closed: the server's answers have no length and end by closing.
func realRelay(binDir string, streams int, size int64, closed bool) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ping" {
			io.WriteString(w, "ok") // bench.UntilOK's answer
			return
		}
		if closed {
			w.Header().Set("Transfer-Encoding", "identity") // net/http: no length, no chunks, close
		} else {
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		}
		io.CopyN(w, zeros{}, size)
	}))
	bins, err := bench.BinsIn(binDir)
	check(err)
	dir, err := os.MkdirTemp("", "relaycore")
	check(err)
	defer os.RemoveAll(dir)
	ports := &loopback.Ports{}
	h, err := bench.NewHub(dir, "demo", "100.96.0.2")
	check(err)
	relay, err := bench.NewRelay(bins, ports, dir, "relay", false, []bench.Hub{h})
	check(err)
	check(relay.Start())
	defer relay.Proc.Stop()
	agent, err := bench.NewAgent(bins, ports, dir, relay, h, bench.AgentSpec{Transport: "tcp", Targets: map[int]string{80: ln.Addr().String()}})
	check(err)
	check(agent.Start())
	defer agent.Proc.Stop()
	_, err = bench.UntilOK(relay.TokenURL("demo", 80, "/ping"), agent.Proc.Started, 30*time.Second)
	check(err)
	c := bench.LoopbackClient(false, time.Minute)
	get := func() int64 {
		return inParallel(streams, size, func() io.ReadCloser {
			req, err := http.NewRequest("GET", "http://"+relay.Public(80)+"/zeros", nil)
			check(err)
			req.Host = "demo.localhost"
			req.Header.Set("Authorization", relay.AuthHeader("demo"))
			resp, err := c.Do(req)
			check(err)
			return resp.Body
		})
	}
	get() // the first warms up the relay's and agent's buffers
	a0, err := bench.CPUTime(agent.Proc.PID())
	check(err)
	n, took, relayCPU, machine := measure(relay.Proc.PID(), get)
	a1, err := bench.CPUTime(agent.Proc.PID())
	check(err)
	report("hubrelay", streams, n, took, relayCPU, machine)
	fmt.Printf("%-14s agent CPU %.3f s/GB\n", "", (a1-a0).Seconds()/(float64(n)/1e9))
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
