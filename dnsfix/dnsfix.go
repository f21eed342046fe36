// Package dnsfix resolves the relay's name so that a hub finds its relay
// even when the home router's DNS misbehaves (a FritzBox answering NXDOMAIN
// or nothing for a public name, ICANN's 127.0.53.53, a private address).
//
// A resolution goes:
//
//  1. The hosts file, as the C library does.
//  2. The hub's own resolvers (resolv.conf, or Config.System), in order,
//     until one gives a good answer: public addresses, or for a local name
//     any usable address.
//  3. Only for a public name with no good answer yet: the fallback (public)
//     resolvers, in order, until one gives a good answer.
//  4. Without a good answer, the best of what is left: a fallback's
//     suspicious answer (private or loopback addresses are what the name's
//     owner published), then the last good answer kept on disk, then the
//     hub's own suspicious answer. The relay is pinned by its WireGuard key,
//     so a wrong address can only fail to connect, never impersonate it.
//
// Addresses from the answers not chosen are offered after the chosen ones;
// addresses the dialer reports as failing (Report) go behind those that
// work. Answers are kept in memory for their TTL (at most an hour). The cache
// file keeps, per name, only addresses a resolver gave that the caller then
// Confirmed: a connection to it completed a WireGuard handshake with the
// relay's pinned key. A forged answer can make a connection fail, never
// land on disk. The file is rewritten only when a confirmed address is new
// to it (sparing the hub's flash), keeping those earlier ones the latest
// answer still names. Resolve spends at most half the time its context has
// left asking resolvers.
//
// dnsfix must never send a local name to a fallback resolver, whatever the
// configuration says: single-label names, fritz.box and the other suffixes
// in localSuffixes, and names below the hub's search domains. fritz.box is
// registered publicly by a third party; a public resolver asked for it would
// send the hub somewhere else.
package dnsfix

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
)

// DefaultFallback are the public resolvers asked when the hub's own give no
// good answer.
var DefaultFallback = []string{"8.8.8.8:53", "8.8.4.4:53", "1.1.1.1:53"}

// DefaultTimeout bounds one query to one resolver.
const DefaultTimeout = 2 * time.Second

const (
	maxMemoryTTL = time.Hour        // an answer is kept in memory at most this long
	doubtTTL     = 30 * time.Second // and a fallback's suspicious answer at most this long
	maxHealth    = 64               // addresses whose dial results are remembered
)

// Config is a Resolver's setup. The zero value asks the system's resolvers,
// then DefaultFallback, and keeps no file.
type Config struct {
	// ResolvConf lists the hub's resolvers and search domains.
	// Default "/etc/resolv.conf".
	ResolvConf string
	// HostsFile is looked at before any resolver. Default "/etc/hosts".
	HostsFile string
	// System, if not empty, replaces ResolvConf's nameservers ("ip" or
	// "ip:port"); ResolvConf's search domains still count as local.
	System []string
	// Fallback are the public resolvers ("ip" or "ip:port"). Nil means
	// DefaultFallback; an empty slice means none.
	Fallback []string
	// CacheFile keeps the last good answer per name. Default "": none.
	CacheFile string
	// Timeout bounds one query to one resolver. Default DefaultTimeout.
	Timeout time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logf receives warnings and changes of answer. Default: discard.
	Logf logger.Logf
}

// Resolver resolves names as the package comment describes. It is safe for
// concurrent use.
type Resolver struct {
	resolvConf string
	hostsFile  string
	system     []string // nil: from resolvConf
	fallback   []string
	cacheFile  string
	timeout    time.Duration
	now        func() time.Time
	logf       logger.Logf

	mu        sync.Mutex
	mem       map[string]memEntry    // answers within their TTL
	disk      map[string]*cacheEntry // what the cache file holds
	diskNote  string                 // why the cache file was not used, until rewritten
	answers   map[string]*Trace      // the latest resolution per name (read-only), for Confirm
	health    map[netip.Addr]*health // what the dialer reported per address
	last      *Trace                 // the latest resolution (read-only)
	lastShown map[string]string      // the outcome last logged, per name
}

type memEntry struct {
	trace   *Trace // read-only
	expires time.Time
}

// health is the dialer's experience with one address.
type health struct {
	fails int // consecutive failures; 0 after a success
	last  time.Time
}

// New returns a Resolver, reading the cache file if there is one. A cache
// file that cannot be used is reported through Logf and ignored.
func New(cfg Config) (*Resolver, error) {
	r := &Resolver{
		resolvConf: cmp.Or(cfg.ResolvConf, "/etc/resolv.conf"),
		hostsFile:  cmp.Or(cfg.HostsFile, "/etc/hosts"),
		cacheFile:  cfg.CacheFile,
		timeout:    cmp.Or(cfg.Timeout, DefaultTimeout),
		now:        cfg.Now,
		logf:       cfg.Logf,
		mem:        map[string]memEntry{},
		answers:    map[string]*Trace{},
		disk:       map[string]*cacheEntry{},
		health:     map[netip.Addr]*health{},
		lastShown:  map[string]string{},
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.logf = logger.OrDiscard(r.logf)
	for _, s := range cfg.System {
		ap, err := ParseServer(s)
		if err != nil {
			return nil, fmt.Errorf("dnsfix.New: system resolver %w", err)
		}
		r.system = append(r.system, ap)
	}
	fallback := cfg.Fallback
	if fallback == nil {
		fallback = DefaultFallback
	}
	r.fallback = []string{}
	for _, s := range fallback {
		ap, err := ParseServer(s)
		if err != nil {
			return nil, fmt.Errorf("dnsfix.New: fallback resolver %w", err)
		}
		r.fallback = append(r.fallback, ap)
	}
	if r.cacheFile != "" {
		disk, err := loadCache(r.cacheFile)
		if err != nil {
			r.diskNote = fmt.Sprintf("ignored the unusable cache file %s (%v); it is rewritten with the next good answer", r.cacheFile, err)
			r.logf("dnsfix: warning: %s", r.diskNote)
		}
		r.disk = disk
	}
	return r, nil
}

// LookupHost resolves host and returns its addresses in the order a dialer
// should try them. It fits uplink.Dialer.LookupHost; pair it with Report.
func (r *Resolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	t, err := r.Resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	return t.Order, nil
}

// Report records whether a connection to addr could be opened. Addresses
// that keep failing are offered after those that work; once every address
// of an answer kept in memory has failed, the name is asked again at the
// next resolution whatever its TTL.
func (r *Resolver) Report(addr netip.Addr, ok bool) {
	addr = addr.Unmap()
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.health[addr]
	if h == nil {
		h = &health{}
		r.health[addr] = h
	}
	if ok {
		h.fails = 0
	} else {
		h.fails++
	}
	h.last = r.now()
	for len(r.health) > maxHealth {
		var oldest netip.Addr
		for a, x := range r.health {
			if !oldest.IsValid() || x.last.Before(r.health[oldest].last) {
				oldest = a
			}
		}
		delete(r.health, oldest)
	}
	if ok {
		return
	}
	for name, e := range r.mem {
		if !slices.ContainsFunc(e.trace.Addrs, r.workingLocked) {
			delete(r.mem, name)
		}
	}
}

// workingLocked reports whether addr has not failed since it last worked.
func (r *Resolver) workingLocked(addr netip.Addr) bool {
	h := r.health[addr]
	return h == nil || h.fails == 0
}

// CacheNote says why the cache file was not used, until it is rewritten;
// "" when it was (or there is none).
func (r *Resolver) CacheNote() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.diskNote
}

// Last returns the latest resolution, or nil before the first. The trace
// must not be changed.
func (r *Resolver) Last() *Trace {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// Resolve resolves host and explains how. The trace is never nil; the error
// is set when no usable address was found, and is a *net.DNSError.
func (r *Resolver) Resolve(ctx context.Context, host string) (*Trace, error) {
	t := &Trace{Name: host, Time: r.now()}
	if a, err := netip.ParseAddr(host); err == nil {
		t.Source, t.Addrs, t.Order = SourceAddress, []netip.Addr{a}, []netip.Addr{a}
		t.Why = "an IP address: nothing to look up"
		return t, nil
	}
	name, err := canonicalName(host)
	if err != nil {
		t.Why = err.Error()
		return t, &net.DNSError{Err: t.Why, Name: host, IsNotFound: true}
	}
	t.Name = name
	if mt := r.fromMemory(name); mt != nil {
		r.finish(mt)
		return mt, nil
	}

	addrs, err := lookupHostsFile(r.hostsFile, name)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Notes = append(t.Notes, fmt.Sprintf("cannot read %s: %v", r.hostsFile, err))
	}
	if len(addrs) > 0 {
		t.Source, t.Server, t.Addrs = SourceHosts, r.hostsFile, addrs
		t.Why = "listed in the hosts file, which comes before DNS"
		return r.finish(t)
	}

	rc, err := readResolvConf(r.resolvConf)
	if err != nil {
		t.Notes = append(t.Notes, fmt.Sprintf("cannot read %s: %v", r.resolvConf, err))
	}
	system := rc.servers
	if r.system != nil {
		system = r.system
	}
	t.Local = LocalName(name, rc.search)
	if len(system) == 0 {
		t.Notes = append(t.Notes, "the hub has no resolvers of its own")
	}
	// Asking may take at most half the time the caller has left, so that
	// a dialer can still use the answer, or the cache, when every resolver
	// is silent.
	askCtx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		askCtx, cancel = context.WithTimeout(ctx, time.Until(dl)/2)
		defer cancel()
	}
	good := r.askEach(askCtx, t, SourceSystem, system, name)
	switch {
	case good < 0 && t.Local != "":
		// Never a fallback: the package's one promise.
	case good < 0 && len(r.fallback) == 0:
		t.Notes = append(t.Notes, "no public fallback resolvers are configured")
	case good < 0:
		good = r.askEach(askCtx, t, SourceFallback, r.fallback, name)
	}
	r.choose(t, good)
	return r.finish(t)
}

// askEach asks the servers in turn until one gives a good answer, and
// returns that answer's index in t.Asked, or -1.
func (r *Resolver) askEach(ctx context.Context, t *Trace, role Source, servers []string, name string) int {
	for _, s := range servers {
		if slices.ContainsFunc(t.Asked, func(a Asked) bool { return a.Server == s }) {
			continue // a fallback that is also one of the hub's resolvers
		}
		if ctx.Err() != nil {
			t.Notes = append(t.Notes, "out of time before asking "+s)
			break
		}
		t.Asked = append(t.Asked, r.ask(ctx, role, s, name, t.Local != ""))
		if t.Asked[len(t.Asked)-1].Result == ResultGood {
			return len(t.Asked) - 1
		}
	}
	return -1
}

// choose picks the answer (see the package comment) and fills in t's
// outcome; t.Source stays "" when there is nothing usable.
func (r *Resolver) choose(t *Trace, good int) {
	first := func(role Source, res Result) int {
		return slices.IndexFunc(t.Asked, func(a Asked) bool { return a.Role == role && a.Result == res })
	}
	r.mu.Lock()
	cached := r.disk[t.Name]
	diskNote := r.diskNote
	r.mu.Unlock()
	if diskNote != "" {
		t.Notes = append(t.Notes, diskNote)
	}

	fromAsked := func(i int) {
		a := t.Asked[i]
		t.Source, t.Server, t.Addrs = a.Role, a.Server, a.Addrs
		t.TTL = min(a.ttl, maxMemoryTTL)
	}
	sysWhy := r.systemSummary(t)
	switch fs, ss := first(SourceFallback, ResultSuspicious), first(SourceSystem, ResultSuspicious); {
	case good >= 0 && t.Asked[good].Role == SourceSystem:
		fromAsked(good)
		t.Why = "the hub's own resolver gave a good answer"
	case good >= 0:
		fromAsked(good)
		t.Why = fmt.Sprintf("%s; a public resolver gave a good answer", sysWhy)
	case fs >= 0:
		fromAsked(fs)
		t.TTL = min(t.TTL, doubtTTL)
		t.Why = fmt.Sprintf("%s, and no resolver gave a public address; the public resolver's answer (%s) is what the name's owner published, and the relay is pinned by its key, so a wrong address can only fail to connect",
			sysWhy, t.Asked[fs].Reason)
	case cached != nil:
		t.Source, t.Server, t.Addrs = SourceCache, r.cacheFile, slices.Clone(cached.Addrs)
		t.Why = fmt.Sprintf("%s; using the last good answer, from %s %s on %s",
			r.failSummary(t), cached.Source, cached.Server, cached.Since.Format(time.DateTime))
	case ss >= 0:
		fromAsked(ss)
		t.TTL = 0
		t.Why = fmt.Sprintf("no resolver gave a public address and there is no last good answer; trying the hub's own resolver's answer although %s", t.Asked[ss].Reason)
	default:
		t.Why = r.failSummary(t) + "; and no earlier good answer is kept on disk"
		return
	}
	// Every other usable address, in the same order of preference.
	add := func(as []netip.Addr) {
		for _, a := range as {
			if !slices.Contains(t.Addrs, a) && !slices.Contains(t.Others, a) {
				t.Others = append(t.Others, a)
			}
		}
	}
	for _, a := range t.Asked {
		if a.Role == SourceFallback && a.Result == ResultSuspicious {
			add(a.Addrs)
		}
	}
	if cached != nil {
		add(cached.Addrs)
	}
	for _, a := range t.Asked {
		if a.Role == SourceSystem && a.Result == ResultSuspicious {
			add(a.Addrs)
		}
	}
}

// systemSummary says what the hub's own resolvers answered.
func (r *Resolver) systemSummary(t *Trace) string {
	var parts []string
	for _, a := range t.Asked {
		if a.Role == SourceSystem {
			parts = append(parts, fmt.Sprintf("%s: %s", a.Server, a.Reason))
		}
	}
	if len(parts) == 0 {
		return "the hub has no resolver of its own to ask"
	}
	return "the hub's own resolver gave no good answer (" + strings.Join(parts, "; ") + ")"
}

// failSummary says why no resolver helped.
func (r *Resolver) failSummary(t *Trace) string {
	if len(t.Asked) == 0 {
		return "no resolver could be asked"
	}
	var parts []string
	for _, a := range t.Asked {
		parts = append(parts, fmt.Sprintf("%s: %s", a.Server, a.Reason))
	}
	s := "no resolver gave a usable answer (" + strings.Join(parts, "; ") + ")"
	if t.Local != "" {
		s += "; a local name is never asked of public resolvers"
	}
	return s
}

// finish orders the addresses, remembers the outcome (memory, cache file,
// log) and returns t with the error Resolve reports.
func (r *Resolver) finish(t *Trace) (*Trace, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !t.FromMemory {
		r.rememberLocked(t)
	}
	t.Order = r.orderLocked(t.Addrs, t.Others)
	r.last = t
	if t.Source == "" {
		return t, &net.DNSError{Err: t.Why, Name: t.Name, IsNotFound: true}
	}
	return t, nil
}

func (r *Resolver) rememberLocked(t *Trace) {
	shown := string(t.Source) + " " + joinAddrs(t.Addrs)
	if t.Source == "" {
		shown = "none"
	}
	if r.lastShown[t.Name] != shown {
		if len(r.lastShown) >= maxCacheNames {
			clear(r.lastShown)
		}
		r.lastShown[t.Name] = shown
		if t.Source == "" {
			r.logf("dnsfix: %s: no address: %s", t.Name, t.Why)
		} else {
			r.logf("dnsfix: %s is %s from %s: %s", t.Name, joinAddrs(t.Addrs), t.Source, t.Why)
		}
	}
	if t.TTL > 0 && (t.Source == SourceSystem || t.Source == SourceFallback) {
		if len(r.mem) >= maxCacheNames {
			clear(r.mem)
		}
		r.mem[t.Name] = memEntry{trace: t, expires: t.Time.Add(t.TTL)}
	}
	if len(r.answers) >= maxCacheNames {
		clear(r.answers)
	}
	r.answers[t.Name] = t
}

// Confirm records that a connection to addr, which Resolve gave for host,
// completed a WireGuard handshake with the relay's pinned key: proof that
// addr is the relay. It is the only way an address reaches the cache file,
// and only one a resolver answered (not the hosts file's, nor one the
// cache gave) is kept. The file is rewritten only when addr is new to it:
// addr first, then the addresses kept before that the latest answer still
// names (round-robin DNS); one that moved elsewhere is dropped.
func (r *Resolver) Confirm(host string, addr netip.Addr) {
	name, err := canonicalName(host)
	if err != nil || r.cacheFile == "" {
		return
	}
	addr = addr.Unmap()
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.answers[name]
	if t == nil {
		return
	}
	i := slices.IndexFunc(t.Asked, func(a Asked) bool {
		return (a.Role == SourceSystem || a.Role == SourceFallback) && slices.Contains(a.Addrs, addr)
	})
	if i < 0 {
		return // not from a resolver: nothing to keep
	}
	old := r.disk[name]
	if old != nil && slices.Contains(old.Addrs, addr) {
		return
	}
	addrs := []netip.Addr{addr}
	if old != nil {
		for _, a := range old.Addrs {
			named := slices.ContainsFunc(t.Asked, func(x Asked) bool { return slices.Contains(x.Addrs, a) })
			if named && len(addrs) < maxCacheAddrs {
				addrs = append(addrs, a)
			}
		}
	}
	next := make(map[string]*cacheEntry, len(r.disk)+1)
	for n, e := range r.disk {
		next[n] = e
	}
	next[name] = &cacheEntry{Addrs: addrs, Source: t.Asked[i].Role, Server: t.Asked[i].Server, Since: r.now().UTC()}
	pruneCache(next)
	if err := writeCache(r.cacheFile, next); err != nil {
		r.logf("dnsfix: warning: cannot keep the address %s of %s in %s: %v", addr, name, r.cacheFile, err)
		return
	}
	r.disk, r.diskNote = next, ""
	r.logf("dnsfix: %s is the relay %s (its key answered); kept in %s", addr, name, r.cacheFile)
}

// fromMemory returns a copy of name's answer while its TTL lasts.
func (r *Resolver) fromMemory(name string) *Trace {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.mem[name]
	if !ok {
		return nil
	}
	now := r.now()
	if !now.Before(e.expires) {
		delete(r.mem, name)
		return nil
	}
	t := *e.trace
	t.Time, t.FromMemory, t.TTL = now, true, e.expires.Sub(now)
	return &t
}

// orderLocked returns the addresses to try: those that have not failed
// since they last worked (chosen before others, each in answer order), then
// those that failed, fewest consecutive failures first.
func (r *Resolver) orderLocked(chosen, others []netip.Addr) []netip.Addr {
	type item struct {
		a     netip.Addr
		fails int
		pos   int
	}
	items := make([]item, 0, len(chosen)+len(others))
	for i, a := range slices.Concat(chosen, others) {
		it := item{a: a, pos: i}
		if h := r.health[a]; h != nil {
			it.fails = h.fails
		}
		items = append(items, it)
	}
	// sort.Slice, not slices.SortStableFunc: pos orders the ties, and a
	// generic sort instantiated for item cost the agent 3.5 KB.
	sort.Slice(items, func(i, j int) bool {
		return cmp.Or(cmp.Compare(items[i].fails, items[j].fails), cmp.Compare(items[i].pos, items[j].pos)) < 0
	})
	out := make([]netip.Addr, len(items))
	for i, it := range items {
		out[i] = it.a
	}
	return out
}
