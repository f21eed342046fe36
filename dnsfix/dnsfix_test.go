package dnsfix

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestLocalName(t *testing.T) {
	search := []string{"corp.example.com"}
	for _, tt := range []struct {
		name  string
		local bool
	}{
		{"fritz.box", true},
		{"nas.fritz.box", true},
		{"myfritz.box", true},
		{"shop.box", false}, // .box itself is a public TLD
		{"notfritz.box", false},
		{"ccu3.local", true},
		{"hub.lan", true},
		{"hub.home.arpa", true},
		{"home.arpa", true},
		{"x.internal", true},
		{"raspberrymatic", true},
		{"localhost", true},
		{"a.localhost", true},
		{"speedport.ip", true},
		{"relay.corp.example.com", true},
		{"corp.example.com", true},
		{"relay.example.com", false},
		{"relay.hubtunnel.test", false}, // RFC 6761: .test is not special to applications
		{"arpa.example.net", false},
	} {
		if got := LocalName(tt.name, search) != ""; got != tt.local {
			t.Errorf("LocalName(%q) local = %v, want %v", tt.name, got, tt.local)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want addrClass
	}{
		{"203.0.113.7", classPublic},
		{"2001:db8::1", classPublic},
		{"127.0.53.53", classUnusable},
		{"0.0.0.0", classUnusable},
		{"::", classUnusable},
		{"224.0.0.1", classUnusable},
		{"255.255.255.255", classUnusable},
		{"127.0.0.1", classPrivate},
		{"::1", classPrivate},
		{"10.1.2.3", classPrivate},
		{"172.16.0.1", classPrivate},
		{"192.168.178.1", classPrivate},
		{"169.254.1.1", classPrivate},
		{"fe80::1", classPrivate},
		{"fd00::1", classPrivate},
		{"100.64.0.1", classPrivate},
		{"198.18.0.5", classPrivate},
		{"::ffff:192.168.1.1", classPrivate},
	} {
		if got, _ := classify(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("classify(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestParseServer(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"8.8.8.8", "8.8.8.8:53"},
		{"127.0.0.2:5353", "127.0.0.2:5353"},
		{"2001:4860:4860::8888", "[2001:4860:4860::8888]:53"},
		{"[::1]:5353", "[::1]:5353"},
		{"[::1]", "[::1]:53"},
		{"dns.google", ""},
		{"8.8.8.8:0", ""},
		{"8.8.8.8:99999", ""},
		{"", ""},
	} {
		got, err := ParseServer(tt.in)
		if (err != nil) != (tt.want == "") || got != tt.want {
			t.Errorf("ParseServer(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestSystemFiles(t *testing.T) {
	dir := t.TempDir()
	rc := filepath.Join(dir, "resolv.conf")
	os.WriteFile(rc, []byte("# FritzBox\ndomain fritz.box\nnameserver 192.168.178.1\nnameserver fe80::1%eth0\nnameserver bogus\nsearch Fritz.Box. lan # comment\noptions ndots:1\n"), 0o644)
	got, err := readResolvConf(rc)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"192.168.178.1:53", "[fe80::1%eth0]:53"}; !slices.Equal(got.servers, want) {
		t.Errorf("servers %v, want %v", got.servers, want)
	}
	if want := []string{"fritz.box", "lan"}; !slices.Equal(got.search, want) {
		t.Errorf("search %v, want %v", got.search, want)
	}
	os.WriteFile(rc, []byte("search lan\n"), 0o644)
	if got, _ := readResolvConf(rc); !slices.Equal(got.servers, []string{"127.0.0.1:53", "[::1]:53"}) {
		t.Errorf("no nameserver lines: %v, want the local machine as the C library does", got.servers)
	}

	hosts := filepath.Join(dir, "hosts")
	os.WriteFile(hosts, []byte("127.0.0.1 localhost\n::1 relay.example.com # v6\n203.0.113.5  Relay.Example.COM. alias\n#203.0.113.6 relay.example.com\nbad relay.example.com\n"), 0o644)
	addrs, err := lookupHostsFile(hosts, "relay.example.com")
	if want := []netip.Addr{netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("::1")}; err != nil || !slices.Equal(addrs, want) {
		t.Errorf("hosts: %v, %v; want %v", addrs, err, want)
	}
}

func TestLoadCacheRejects(t *testing.T) {
	dir := t.TempDir()
	good := `{"version":1,"names":{"relay.example.com":{"addrs":["203.0.113.7"],"source":"fallback","server":"8.8.8.8:53","since":"2026-01-01T00:00:00Z"}}}`
	for _, tt := range []struct{ name, data string }{
		{"empty", ""},
		{"truncated", good[:len(good)/2]},
		{"not json", "\x00\x01garbage"},
		{"null", "null"},
		{"version", strings.Replace(good, `"version":1`, `"version":7`, 1)},
		{"bad addr", strings.Replace(good, "203.0.113.7", "999.0.113.7", 1)},
		{"collision addr", strings.Replace(good, "203.0.113.7", "127.0.53.53", 1)},
		{"no addrs", strings.Replace(good, `["203.0.113.7"]`, `[]`, 1)},
		{"bad name", strings.Replace(good, "relay.example.com", "Relay Example", 1)},
		{"bad source", strings.Replace(good, `"fallback"`, `"rumour"`, 1)},
		{"unknown key", strings.Replace(good, `"version":1`, `"version":1,"extra":true`, 1)},
		{"trailing", good + "{}"},
		{"huge", good + strings.Repeat(" ", maxCacheFile)},
	} {
		p := filepath.Join(dir, tt.name)
		os.WriteFile(p, []byte(tt.data), 0o644)
		if m, err := loadCache(p); err == nil || len(m) != 0 {
			t.Errorf("%s: loadCache = %v, %v; want an error and nothing", tt.name, m, err)
		}
	}
	p := filepath.Join(dir, "good")
	os.WriteFile(p, []byte(good), 0o644)
	if m, err := loadCache(p); err != nil || len(m) != 1 {
		t.Errorf("good file: %v, %v", m, err)
	}
	if m, err := loadCache(filepath.Join(dir, "missing")); err != nil || len(m) != 0 {
		t.Errorf("missing file: %v, %v; want an empty cache, no error", m, err)
	}
}

// fakeDNS is a miekg/dns server on loopback answering from a table:
// name → A/AAAA records (as strings), or an rcode.
type fakeDNS struct {
	addr    string
	mu      sync.Mutex
	answers map[string][]string // "name. 300 IN A 1.2.3.4", ...
	rcode   map[string]int
}

func (f *fakeDNS) set(name string, records ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[name] = records
}

func startFake(t *testing.T, answers map[string][]string, rcode map[string]int) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDNS{addr: pc.LocalAddr().String(), answers: answers, rcode: rcode}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		f.mu.Lock()
		defer f.mu.Unlock()
		if rc, ok := f.rcode[strings.ToLower(q.Name)]; ok {
			m.Rcode = rc
		}
		for _, s := range f.answers[strings.ToLower(q.Name)] {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Errorf("bad test record %q: %v", s, err)
				continue
			}
			if rr.Header().Rrtype == q.Qtype || rr.Header().Rrtype == dns.TypeCNAME {
				m.Answer = append(m.Answer, rr)
			}
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return f
}

func newTestResolver(t *testing.T, system, fallback []string, cache string) *Resolver {
	t.Helper()
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o644)
	r, err := New(Config{ResolvConf: empty, HostsFile: empty, System: system, Fallback: fallback,
		CacheFile: cache, Timeout: time.Second, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestChoice covers the order of preference with answers that dnsmasq is
// not asked to give: CNAME chains, 0.0.0.0, private answers everywhere.
func TestChoice(t *testing.T) {
	const name = "relay.example.com."
	sysPrivate := startFake(t, map[string][]string{name: {name + " 60 IN A 192.168.178.20"}}, nil)
	pubPrivate := startFake(t, map[string][]string{name: {name + " 60 IN A 10.0.0.7"}}, nil)
	blocked := startFake(t, map[string][]string{name: {name + " 60 IN A 0.0.0.0", name + " 60 IN AAAA ::"}}, nil)
	cname := startFake(t, map[string][]string{name: {
		name + " 600 IN CNAME edge.cdn.example.net.",
		"edge.cdn.example.net. 120 IN A 203.0.113.80",
		"other.example.net. 120 IN A 203.0.113.99", // not on the chain
	}}, nil)
	nx := startFake(t, nil, map[string]int{name: dns.RcodeNameError})
	down := func() string {
		pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
		defer pc.Close()
		return pc.LocalAddr().String()
	}()

	for _, tt := range []struct {
		name     string
		system   []string
		fallback []string
		want     string
		source   Source
		ttl      time.Duration
	}{
		{"cname", []string{cname.addr}, nil, "203.0.113.80", SourceSystem, 120 * time.Second},
		{"private everywhere: the public resolver's word", []string{sysPrivate.addr}, []string{pubPrivate.addr}, "10.0.0.7", SourceFallback, 30 * time.Second},
		{"private, fallback down: the hub's own answer", []string{sysPrivate.addr}, []string{down}, "192.168.178.20", SourceSystem, 0},
		{"blocked by a filter", []string{blocked.addr}, []string{cname.addr}, "203.0.113.80", SourceFallback, 120 * time.Second},
		{"blocked everywhere", []string{blocked.addr}, []string{nx.addr}, "", "", 0},
		{"second system resolver", []string{nx.addr, cname.addr}, []string{pubPrivate.addr}, "203.0.113.80", SourceSystem, 120 * time.Second},
		{"no fallbacks", []string{nx.addr}, []string{}, "", "", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fb := tt.fallback
			if fb == nil {
				fb = []string{}
			}
			r := newTestResolver(t, tt.system, fb, "")
			tr, err := r.Resolve(context.Background(), "Relay.Example.COM.")
			t.Logf("%s", tr)
			if tt.want == "" {
				var de *net.DNSError
				if err == nil || !errors.As(err, &de) || tr.Source != "" {
					t.Fatalf("got %v from %s (err %v), want a *net.DNSError", tr.Addrs, tr.Source, err)
				}
				return
			}
			if err != nil || tr.Source != tt.source || tr.Order[0] != netip.MustParseAddr(tt.want) || tr.TTL != tt.ttl {
				t.Fatalf("got %v from %s, TTL %v (err %v); want %s from %s, TTL %v", tr.Order, tr.Source, tr.TTL, err, tt.want, tt.source, tt.ttl)
			}
		})
	}
}

// TestHostsFileFirst: a name in the hosts file asks no resolver.
func TestHostsFileFirst(t *testing.T) {
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	os.WriteFile(hosts, []byte("203.0.113.9 relay.example.com\n"), 0o644)
	r, err := New(Config{ResolvConf: filepath.Join(dir, "none"), HostsFile: hosts, System: []string{"127.0.0.1:1"}, Fallback: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := r.Resolve(context.Background(), "relay.example.com")
	if err != nil || tr.Source != SourceHosts || len(tr.Asked) != 0 || tr.Addrs[0] != netip.MustParseAddr("203.0.113.9") {
		t.Fatalf("got %v from %s, asked %d: %v", tr.Addrs, tr.Source, len(tr.Asked), err)
	}
}

func TestNewRejectsBadServers(t *testing.T) {
	if _, err := New(Config{Fallback: []string{"dns.google"}}); err == nil {
		t.Error("a resolver given by name was accepted")
	}
	if _, err := New(Config{System: []string{"1.2.3.4:x"}}); err == nil {
		t.Error("a bad port was accepted")
	}
}

// TestCacheFileWrites: the file is rewritten at once when the relay moved,
// but an answer that still shares an address waits an hour.
func TestCacheFileWrites(t *testing.T) {
	const name = "relay.example.com."
	srv := startFake(t, map[string][]string{}, nil)
	cache := filepath.Join(t.TempDir(), "dns-cache.json")
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o644)
	r, err := New(Config{ResolvConf: empty, HostsFile: empty, System: []string{srv.addr}, Fallback: []string{},
		CacheFile: cache, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	kept := func() []netip.Addr {
		m, err := loadCache(cache)
		if err != nil {
			t.Fatal(err)
		}
		if e := m["relay.example.com"]; e != nil {
			return e.Addrs
		}
		return nil
	}
	step := func(records ...string) {
		srv.set(name, records...)
		now = now.Add(time.Minute) // past the 0 s TTL
		if _, err := r.Resolve(context.Background(), name); err != nil {
			t.Fatal(err)
		}
	}
	a, b, c := name+" 0 IN A 203.0.113.1", name+" 0 IN A 203.0.113.2", name+" 0 IN A 203.0.113.3"
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	ip := netip.MustParseAddr
	step(a, b)
	if _, err := os.Stat(cache); !os.IsNotExist(err) {
		t.Fatalf("an answer reached the cache file before any address was confirmed: %v", err)
	}
	r.Confirm(name, ip("198.51.100.9")) // not in the answer: a forged address cannot be confirmed in
	r.Confirm("other.example.com", ip("203.0.113.1"))
	if got := kept(); got != nil {
		t.Fatalf("kept %v for addresses the answer did not give", got)
	}
	r.Confirm(name, ip("203.0.113.2"))
	if got := kept(); !sameAddrs(got, addrs("203.0.113.2")) {
		t.Fatalf("first confirmed: kept %v", got)
	}
	fi1, _ := os.Stat(cache)
	r.Confirm(name, ip("203.0.113.2"))
	if fi2, _ := os.Stat(cache); !os.SameFile(fi1, fi2) {
		t.Errorf("rewritten for an address it kept already")
	}
	step(b, c) // rotated: still names .2
	r.Confirm(name, ip("203.0.113.3"))
	if got := kept(); !slices.Equal(got, addrs("203.0.113.3", "203.0.113.2")) {
		t.Errorf("a second confirmed address of a rotating answer: kept %v", got)
	}
	step(a) // moved: nothing in common
	r.Confirm(name, ip("203.0.113.1"))
	if got := kept(); !sameAddrs(got, addrs("203.0.113.1")) {
		t.Errorf("the relay moved: kept %v", got)
	}
}

// TestSilentResolversLeaveTimeToDial: with every resolver silent, Resolve
// gives up asking at half the caller's deadline and answers from the cache.
func TestSilentResolversLeaveTimeToDial(t *testing.T) {
	var silent []string
	for range 4 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		silent = append(silent, pc.LocalAddr().String())
	}
	cache := filepath.Join(t.TempDir(), "dns-cache.json")
	os.WriteFile(cache, []byte(`{"version":1,"names":{"relay.example.com":{"addrs":["203.0.113.7"],"source":"fallback","server":"8.8.8.8:53","since":"2026-01-01T00:00:00Z"}}}`), 0o644)
	r := newTestResolver(t, silent[:2], silent[2:], cache)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	tr, err := r.Resolve(ctx, "relay.example.com")
	took := time.Since(start)
	t.Logf("%s", tr)
	if err != nil || tr.Source != SourceCache {
		t.Fatalf("got %v from %s: %v", tr.Addrs, tr.Source, err)
	}
	if took > 800*time.Millisecond || ctx.Err() != nil {
		t.Errorf("took %v of a 1 s deadline; want about half", took)
	}
}

// TestConfirmOnAFullDisk: when the cache file's disk is full, Confirm
// fails with a warning and the cache file keeps its previous addresses,
// whole; a later Confirm, with room again, writes it.
func TestConfirmOnAFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	const name = "relay.example.com."
	srv := startFake(t, map[string][]string{}, nil)
	cache := filepath.Join(dir, "dns-cache.json")
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o644)
	var log strings.Builder
	r, err := New(Config{ResolvConf: empty, HostsFile: empty, System: []string{srv.addr}, Fallback: []string{},
		CacheFile: cache, Logf: func(f string, a ...any) { fmt.Fprintf(&log, f+"\n", a...) }})
	if err != nil {
		t.Fatal(err)
	}
	srv.set(name, name+" 0 IN A 203.0.113.1", name+" 0 IN A 203.0.113.2")
	if _, err := r.Resolve(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	r.Confirm(name, netip.MustParseAddr("203.0.113.1"))
	before := readFile(t, cache)

	filler, _ := os.Create(filepath.Join(dir, "filler"))
	for range 64 {
		if _, err := filler.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	r.Confirm(name, netip.MustParseAddr("203.0.113.2"))
	if !strings.Contains(log.String(), "warning: cannot keep the address 203.0.113.2") {
		t.Errorf("no warning for the failed write; log:\n%s", log.String())
	}
	if got := readFile(t, cache); got != before {
		t.Errorf("the cache file changed on a full disk:\n%s\nwas\n%s", got, before)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".dns-cache.json.tmp*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	filler.Close()
	os.Remove(filler.Name())
	r.Confirm(name, netip.MustParseAddr("203.0.113.2"))
	if m, err := loadCache(cache); err != nil || len(m["relay.example.com"].Addrs) != 2 {
		t.Errorf("with room again: %v, %v", m, err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
