// Package dnsfixtest starts real resolvers on loopback for tests: dnsmasq
// instances that play a home router or a public resolver, and a resolver
// that never answers. Everything it starts listens on 127.0.0.0/8 only and
// is stopped by the test's cleanup.
//
// A missing dnsmasq skips the test, or fails it when the CI environment
// variable is set: CI must not pass by skipping.
package dnsfixtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// DefaultTTL is the TTL of the answers Dnsmasq gives for --address names.
const DefaultTTL = 300

// Dnsmasq is a running dnsmasq.
type Dnsmasq struct {
	Addr string // "ip:port", UDP and TCP
	Log  string // its log file, with every query (--log-queries)

	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
}

// StartDnsmasq starts dnsmasq on ip (a loopback address such as
// "127.0.0.2") at a free port with args added to a configuration that
// answers only what args say: no upstream servers, no hosts file, no cache
// (unless args set --cache-size, as --dnssec needs),
// --address answers with a TTL of DefaultTTL. It returns once dnsmasq
// answers.
func StartDnsmasq(t testing.TB, ip string, args ...string) *Dnsmasq {
	t.Helper()
	path := dnsmasqPath(t)
	dir := t.TempDir()
	var lastErr string
	for try := range 5 {
		port, err := freeUDPTCPPort(ip)
		if err != nil {
			t.Fatalf("dnsfixtest: %v", err)
		}
		d := &Dnsmasq{
			Addr: net.JoinHostPort(ip, fmt.Sprint(port)),
			Log:  filepath.Join(dir, fmt.Sprintf("dnsmasq-%d.log", try)),
			done: make(chan struct{}),
		}
		argv := append([]string{
			"--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=",
			"--no-resolv", "--no-hosts", "--no-poll",
			"--listen-address=" + ip, "--bind-interfaces", fmt.Sprintf("--port=%d", port),
			"--log-queries", "--log-facility=" + d.Log, fmt.Sprintf("--local-ttl=%d", DefaultTTL),
		}, args...)
		if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--cache-size=") }) {
			argv = append(argv, "--cache-size=0") // every query reaches the log
		}
		if os.Geteuid() == 0 {
			argv = append(argv, "--user=root") // to keep writing its log
		}
		var stderr bytes.Buffer
		d.cmd = exec.Command(path, argv...)
		d.cmd.Stdout, d.cmd.Stderr = &stderr, &stderr
		if err := d.cmd.Start(); err != nil {
			t.Fatalf("dnsfixtest: start dnsmasq: %v", err)
		}
		go func() {
			d.cmd.Wait()
			close(d.done)
		}()
		if d.waitReady(10 * time.Second) {
			t.Cleanup(d.Stop)
			return d
		}
		d.Stop()
		lastErr = strings.TrimSpace(stderr.String() + " " + readString(d.Log))
		if !strings.Contains(lastErr, "in use") {
			break
		}
	}
	t.Fatalf("dnsfixtest: dnsmasq %s did not come up: %s", strings.Join(args, " "), lastErr)
	return nil
}

// waitReady polls dnsmasq with a query until it answers (any answer).
func (d *Dnsmasq) waitReady(timeout time.Duration) bool {
	m := new(dns.Msg)
	m.SetQuestion("dnsfixtest-ready.invalid.", dns.TypeA)
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	return until(timeout, func() bool {
		select {
		case <-d.done:
			return true // gave up: it exited
		default:
		}
		_, _, err := c.Exchange(m, d.Addr)
		return err == nil
	}) && !d.exited()
}

func (d *Dnsmasq) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// until checks cond every poll.Interval until it holds or timeout passes,
// and reports whether it held.
func until(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(poll.Interval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// Stop ends dnsmasq and waits for it; closed ports then refuse queries.
func (d *Dnsmasq) Stop() {
	d.once.Do(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
	})
}

// Queries returns the names dnsmasq was asked for, in order, lower case,
// without the readiness probes.
func (d *Dnsmasq) Queries() []string {
	var names []string
	for _, m := range queryLine.FindAllStringSubmatch(readString(d.Log), -1) {
		if n := strings.ToLower(m[1]); n != "dnsfixtest-ready.invalid" {
			names = append(names, n)
		}
	}
	return names
}

// Asked reports whether dnsmasq was ever asked for name.
func (d *Dnsmasq) Asked(name string) bool {
	for _, n := range d.Queries() {
		if n == name {
			return true
		}
	}
	return false
}

// WaitAsked waits until dnsmasq's log shows a query for name. dnsmasq
// writes its log a moment after it answers.
func (d *Dnsmasq) WaitAsked(t testing.TB, name string) {
	t.Helper()
	poll.Until(t, 5*time.Second, "dnsmasq "+d.Addr+" to log a query for "+name, func() bool { return d.Asked(name) })
}

var queryLine = regexp.MustCompile(`(?m)query\[\w+\] (\S+) from `)

// Silent returns "ip:port" of a resolver that never answers: a UDP socket
// that reads and drops, and a TCP port that accepts and then says nothing.
// It also returns how many UDP queries reached it so far.
func Silent(t testing.TB, ip string) (addr string, queries func() int) {
	t.Helper()
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 {
		if pc, err = net.ListenPacket("udp", net.JoinHostPort(ip, "0")); err != nil {
			t.Fatalf("dnsfixtest: %v", err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("dnsfixtest: no port free for UDP and TCP on %s: %v", ip, err)
	}
	var mu sync.Mutex
	n := 0
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
		}
	}()
	var conns []net.Conn
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		ln.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	return pc.LocalAddr().String(), func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// Closed returns "ip:port" where nothing listens: queries are refused at
// once, as with a resolver that is down.
func Closed(t testing.TB, ip string) string {
	t.Helper()
	port, err := freeUDPTCPPort(ip)
	if err != nil {
		t.Fatalf("dnsfixtest: %v", err)
	}
	return net.JoinHostPort(ip, fmt.Sprint(port))
}

// freeUDPTCPPort finds a port that is free on ip for both UDP and TCP.
func freeUDPTCPPort(ip string) (int, error) {
	for range 20 {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return 0, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		pc.Close()
		if err == nil {
			ln.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no port free for UDP and TCP on %s", ip)
}

func dnsmasqPath(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("dnsmasq"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/dnsmasq", "/sbin/dnsmasq"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := "dnsmasq is not installed (needed as a real resolver); scripts/deps.sh installs it"
	if os.Getenv("CI") != "" {
		t.Fatal("CI: " + msg)
	}
	t.Skip(msg)
	return ""
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
