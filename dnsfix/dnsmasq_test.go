package dnsfix_test

// The cases with real resolvers: dnsmasq on 127.0.0.2 plays the
// FritzBox (a new instance per case), dnsmasq on 127.0.0.3 the public
// resolver. Nothing leaves loopback.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/dnsfix"
	"github.com/hubtunnel/hubtunnel/dnsfix/dnsfixtest"
	"github.com/hubtunnel/hubtunnel/internal/poll"
)

const (
	relayName = "relay.hubtunnel.test"
	fritzIP   = "127.0.0.2"
	publicIP  = "127.0.0.3"
	ispIP     = "127.0.0.4"
)

var (
	relayV4 = netip.MustParseAddr("203.0.113.10")
	relayV6 = netip.MustParseAddr("2001:db8::10")
	// anyV4 is what the public resolver says for every other name, as a
	// public resolver would for fritz.box, which a third party registered.
	anyV4 = netip.MustParseAddr("198.51.100.99")
)

// publicResolver starts the public resolver's dnsmasq: the relay's real
// addresses, and an address for any other name.
func publicResolver(t *testing.T) *dnsfixtest.Dnsmasq {
	return dnsfixtest.StartDnsmasq(t, publicIP,
		"--address=/"+relayName+"/"+relayV4.String(), "--address=/"+relayName+"/"+relayV6.String(),
		"--address=/#/"+anyV4.String())
}

// rootAnchor is the DNS root's key (KSK-2017). A FritzBox dnsmasq that
// validates DNSSEC with it, forwarding to an upstream without DNSSEC
// support, cannot prove the answer and says SERVFAIL ("Insecure DS reply
// received ... check upstream DNS server DNSSEC support"): a real resolver
// failure, not a simulated one.
const rootAnchor = "--trust-anchor=.,20326,8,2,E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D"

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newResolver is a resolver with the given system and fallback resolvers,
// a resolv.conf and hosts file of its own, and a short query timeout.
func newResolver(t *testing.T, system, fallback []string, cacheFile string) (*dnsfix.Resolver, *fakeClock, *strings.Builder) {
	t.Helper()
	dir := t.TempDir()
	rc := filepath.Join(dir, "resolv.conf")
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(rc, []byte("search example-isp.net\nnameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	clock := newClock()
	var mu sync.Mutex
	log := &strings.Builder{}
	r, err := dnsfix.New(dnsfix.Config{
		ResolvConf: rc, HostsFile: hosts,
		System: system, Fallback: fallback, CacheFile: cacheFile,
		Timeout: 300 * time.Millisecond,
		Now:     clock.Now,
		Logf: func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			log.WriteString(strings.TrimSpace(fmt.Sprintf(format, args...)) + "\n")
			t.Logf(format, args...)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, clock, log
}

func resolve(t *testing.T, r *dnsfix.Resolver, name string) (*dnsfix.Trace, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tr, err := r.Resolve(ctx, name)
	t.Logf("trace:\n%s", tr)
	return tr, err
}

// TestFritzBoxCases is the table: the FritzBox misbehaves in one
// way per row, and the right address is chosen from the right place.
func TestFritzBoxCases(t *testing.T) {
	public := publicResolver(t)
	// The FritzBox's own upstream, for the SERVFAIL row: it answers, but
	// without the DNSSEC signatures the FritzBox insists on.
	isp := dnsfixtest.StartDnsmasq(t, ispIP, "--address=/"+relayName+"/"+relayV4.String(), "--address=/"+relayName+"/"+relayV6.String())
	silent, silentQueries := dnsfixtest.Silent(t, fritzIP)
	many := []string{}
	for i := 1; i <= 40; i++ {
		many = append(many, "--address=/"+relayName+"/203.0.113."+strconv.Itoa(100+i))
	}

	tests := []struct {
		name      string
		fritz     []string // dnsmasq arguments; nil: the silent resolver
		want      netip.Addr
		source    dnsfix.Source
		rcode     string // one of the FritzBox's answers
		others    []netip.Addr
		truncated bool
	}{
		{name: "good", fritz: []string{"--address=/" + relayName + "/" + relayV4.String()}, want: relayV4, source: dnsfix.SourceSystem, rcode: "NOERROR"},
		{name: "nxdomain", fritz: []string{"--address=/" + relayName + "/"}, want: relayV4, source: dnsfix.SourceFallback, rcode: "NXDOMAIN"},
		{name: "servfail", fritz: []string{"--dnssec", rootAnchor, "--cache-size=150", "--server=" + strings.Replace(isp.Addr, ":", "#", 1)}, want: relayV4, source: dnsfix.SourceFallback, rcode: "SERVFAIL"},
		{name: "collision", fritz: []string{"--address=/" + relayName + "/127.0.53.53"}, want: relayV4, source: dnsfix.SourceFallback, rcode: "NOERROR"},
		{name: "private", fritz: []string{"--address=/" + relayName + "/192.168.178.20"}, want: relayV4, source: dnsfix.SourceFallback, rcode: "NOERROR",
			others: []netip.Addr{netip.MustParseAddr("192.168.178.20")}},
		{name: "silent", want: relayV4, source: dnsfix.SourceFallback},
		{name: "truncated", fritz: many, source: dnsfix.SourceSystem, rcode: "NOERROR", truncated: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			system := silent
			if tc.fritz != nil {
				system = dnsfixtest.StartDnsmasq(t, fritzIP, tc.fritz...).Addr
			}
			silentBefore := silentQueries()
			r, _, _ := newResolver(t, []string{system}, []string{public.Addr}, "")
			tr, err := resolve(t, r, relayName)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if tc.truncated {
				tc.want = tr.Addrs[0] // dnsmasq's order
			}
			if tr.Source != tc.source || len(tr.Order) == 0 || tr.Order[0] != tc.want {
				t.Fatalf("got %v from %s, want %v first from %s", tr.Order, tr.Source, tc.want, tc.source)
			}
			if tc.source == dnsfix.SourceFallback && !slices.Contains(tr.Addrs, relayV6) {
				t.Errorf("the fallback's AAAA answer is missing: %v", tr.Addrs)
			}
			sys := tr.Asked[0]
			if sys.Role != dnsfix.SourceSystem || sys.Server != system {
				t.Fatalf("first asked %s %s, want the FritzBox %s", sys.Role, sys.Server, system)
			}
			if tc.rcode != "" && !slices.ContainsFunc(sys.Queries, func(q dnsfix.Query) bool { return q.Rcode == tc.rcode }) {
				t.Errorf("the FritzBox's answers %+v, want one %s", sys.Queries, tc.rcode)
			}
			if tc.fritz == nil {
				if sys.Queries[0].Err != "timeout" || silentQueries()-silentBefore < 2 {
					t.Errorf("silent FritzBox: %+v, %d queries reached it", sys.Queries, silentQueries()-silentBefore)
				}
			}
			if asked := len(tr.Asked) > 1; asked != (tc.source == dnsfix.SourceFallback) {
				t.Errorf("public resolver asked: %v, want %v", asked, !asked)
			}
			if tc.truncated && (sys.Queries[0].Net != "tcp" || len(tr.Addrs) != 40) {
				t.Errorf("truncated answer: %s, %d addresses; want tcp, 40", sys.Queries[0].Net, len(tr.Addrs))
			}
			for _, o := range tc.others {
				if !slices.Contains(tr.Others, o) {
					t.Errorf("Others %v lacks %v", tr.Others, o)
				}
			}
		})
	}
}

// TestLocalNamesNeverLeave asks for local names while the FritzBox fails,
// then for a public name; the public resolver's query log must show the
// public name and none of the local ones.
func TestLocalNamesNeverLeave(t *testing.T) {
	public := publicResolver(t)
	fritz := dnsfixtest.StartDnsmasq(t, fritzIP) // REFUSED for everything
	silent, _ := dnsfixtest.Silent(t, fritzIP)
	local := []string{"fritz.box", "nas.fritz.box", "FRITZ.BOX.", "myfritz.box", "ccu3.local", "hub.lan",
		"hub.home.arpa", "hub.internal", "raspberrymatic", "router.home", "speedport.ip", "relay.example-isp.net"}
	for _, system := range []string{fritz.Addr, silent} {
		r, _, _ := newResolver(t, []string{system}, []string{public.Addr}, "")
		for _, name := range local {
			tr, err := resolve(t, r, name)
			if err == nil || tr.Local == "" {
				t.Errorf("%s: got %v, local %q; want an error for a local name", name, tr.Order, tr.Local)
			}
			for _, a := range tr.Asked {
				if a.Role != dnsfix.SourceSystem {
					t.Errorf("%s was asked of %s %s", name, a.Role, a.Server)
				}
			}
		}
	}
	for _, name := range local {
		fritz.WaitAsked(t, strings.TrimSuffix(strings.ToLower(name), "."))
	}
	// The sentinel: a public name, which must reach the public resolver.
	r, _, _ := newResolver(t, []string{fritz.Addr}, []string{public.Addr}, "")
	if tr, err := resolve(t, r, "sentinel.hubtunnel.test"); err != nil || tr.Source != dnsfix.SourceFallback {
		t.Fatalf("sentinel: %v from %s", err, tr.Source)
	}
	public.WaitAsked(t, "sentinel.hubtunnel.test")
	for _, q := range public.Queries() {
		if q != "sentinel.hubtunnel.test" {
			t.Errorf("the public resolver was asked for %q", q)
		}
	}
}

// TestCacheCarriesRestart resolves through the public resolver, then
// "restarts" (a new Resolver) with both resolvers down: the cache file
// answers. The file is written once, not at every answer.
func TestCacheCarriesRestart(t *testing.T) {
	public := publicResolver(t)
	fritz := dnsfixtest.StartDnsmasq(t, fritzIP, "--address=/"+relayName+"/")
	cache := filepath.Join(t.TempDir(), "dns-cache.json")

	r, _, _ := newResolver(t, []string{fritz.Addr}, []string{public.Addr}, cache)
	if tr, err := resolve(t, r, relayName); err != nil || tr.Source != dnsfix.SourceFallback {
		t.Fatalf("first: %v from %s", err, tr.Source)
	}
	r.Confirm(relayName, relayV4) // the agent's handshake with the relay there
	fi1, err := os.Stat(cache)
	if err != nil {
		t.Fatalf("no cache file: %v", err)
	}
	// Same answer again (new Resolver, so no memory): no rewrite.
	r, _, _ = newResolver(t, []string{fritz.Addr}, []string{public.Addr}, cache)
	if _, err := resolve(t, r, relayName); err != nil {
		t.Fatal(err)
	}
	r.Confirm(relayName, relayV4)
	fi2, err := os.Stat(cache)
	if err != nil || !os.SameFile(fi1, fi2) || !fi1.ModTime().Equal(fi2.ModTime()) {
		t.Errorf("cache file rewritten for the same answer")
	}
	if matches, _ := filepath.Glob(filepath.Join(filepath.Dir(cache), ".dns-cache.json.tmp*")); len(matches) > 0 {
		t.Errorf("temporary files left: %v", matches)
	}

	fritz.Stop()
	public.Stop()
	r, _, _ = newResolver(t, []string{fritz.Addr}, []string{public.Addr}, cache)
	tr, err := resolve(t, r, relayName)
	if err != nil || tr.Source != dnsfix.SourceCache || !slices.Contains(tr.Addrs, relayV4) || tr.Order[0] != relayV4 {
		t.Fatalf("with both resolvers down: %v, %v from %s; want %v from the cache", err, tr.Order, tr.Source, relayV4)
	}
	for _, a := range tr.Asked {
		if a.Result != dnsfix.ResultFailed {
			t.Errorf("%s: %s, want failed", a.Server, a.Result)
		}
	}
}

// TestCorruptCacheSurvived starts with a damaged cache file: a warning,
// no answer while the resolvers are down, and a good file again once
// they are back.
func TestCorruptCacheSurvived(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "dns-cache.json")
	if err := os.WriteFile(cache, []byte(`{"version":1,"names":{"relay.hubtunnel.test":{"addrs":["203.0.11`), 0o644); err != nil {
		t.Fatal(err)
	}
	down := dnsfixtest.Closed(t, fritzIP)
	r, _, log := newResolver(t, []string{down}, []string{dnsfixtest.Closed(t, publicIP)}, cache)
	if !strings.Contains(log.String(), "warning: ignored the unusable cache file") {
		t.Errorf("no warning about the corrupt cache file; log: %q", log.String())
	}
	tr, err := resolve(t, r, relayName)
	if err == nil || tr.Source != "" {
		t.Fatalf("got %v from %s with everything down and a corrupt cache", tr.Order, tr.Source)
	}
	if !strings.Contains(strings.Join(tr.Notes, " "), "unusable cache file") {
		t.Errorf("the trace does not mention the corrupt cache: %v", tr.Notes)
	}

	public := publicResolver(t)
	r, _, _ = newResolver(t, []string{down}, []string{public.Addr}, cache)
	if tr, err := resolve(t, r, relayName); err != nil || tr.Source != dnsfix.SourceFallback {
		t.Fatalf("with the public resolver back: %v from %s", err, tr.Source)
	}
	r.Confirm(relayName, relayV4)
	var cf struct {
		Version int
		Names   map[string]struct{ Addrs []netip.Addr }
	}
	data, _ := os.ReadFile(cache)
	if err := json.Unmarshal(data, &cf); err != nil || !slices.Contains(cf.Names[relayName].Addrs, relayV4) {
		t.Errorf("cache file not rewritten well: %v\n%s", err, data)
	}
}

// TestTTLRespected: within the TTL no resolver is asked; after it, again.
func TestTTLRespected(t *testing.T) {
	fritz := dnsfixtest.StartDnsmasq(t, fritzIP, "--address=/"+relayName+"/"+relayV4.String())
	r, clock, _ := newResolver(t, []string{fritz.Addr}, []string{}, "")
	tr, err := resolve(t, r, relayName)
	if err != nil || tr.TTL != dnsfixtest.DefaultTTL*time.Second {
		t.Fatalf("first: %v, TTL %v", err, tr.TTL)
	}
	clock.Advance(dnsfixtest.DefaultTTL*time.Second - time.Second)
	if tr, _ := resolve(t, r, relayName); !tr.FromMemory || tr.TTL != time.Second {
		t.Errorf("within the TTL: from memory %v, TTL left %v", tr.FromMemory, tr.TTL)
	}
	clock.Advance(2 * time.Second)
	if tr, _ := resolve(t, r, relayName); tr.FromMemory {
		t.Errorf("after the TTL: from memory")
	}
	// Each resolution asks A and AAAA: 4 queries, not 6.
	poll.Until(t, 5*time.Second, "the FritzBox's log", func() bool { return len(fritz.Queries()) >= 4 })
	if len(fritz.Queries()) != 4 {
		t.Errorf("the FritzBox was asked %d times, want 4: %v", len(fritz.Queries()), fritz.Queries())
	}
}

// TestFailingAddressGoesLast: the dialer's reports reorder the answer, and
// an answer whose every address failed is asked again before its TTL ends.
func TestFailingAddressGoesLast(t *testing.T) {
	fritz := dnsfixtest.StartDnsmasq(t, fritzIP, "--address=/"+relayName+"/203.0.113.10", "--address=/"+relayName+"/203.0.113.11")
	r, _, _ := newResolver(t, []string{fritz.Addr}, []string{}, "")
	order := func() []netip.Addr {
		addrs, err := r.LookupHost(context.Background(), relayName)
		if err != nil {
			t.Fatal(err)
		}
		return addrs
	}
	first := order()
	if len(first) != 2 {
		t.Fatalf("got %v, want two addresses", first)
	}
	a, b := first[0], first[1] // in the answer's order
	r.Report(a, false)
	if got := order(); !slices.Equal(got, []netip.Addr{b, a}) {
		t.Errorf("after %v failed: %v", a, got)
	}
	r.Report(b, false)
	r.Report(a, false)
	if got := order(); !slices.Equal(got, []netip.Addr{b, a}) {
		t.Errorf("after %v failed twice and %v once: %v", a, b, got)
	}
	if r.Last().FromMemory {
		t.Errorf("every address failed, yet the answer came from memory")
	}
	r.Report(a, true)
	if got := order(); !slices.Equal(got, []netip.Addr{a, b}) {
		t.Errorf("after %v worked: %v", a, got)
	}
}
