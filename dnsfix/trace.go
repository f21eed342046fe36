package dnsfix

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Source is where a chosen answer came from.
type Source string

const (
	SourceAddress  Source = "address"  // the name was an IP address
	SourceHosts    Source = "hosts"    // the hosts file
	SourceSystem   Source = "system"   // one of the hub's own resolvers
	SourceFallback Source = "fallback" // one of the public fallback resolvers
	SourceCache    Source = "cache"    // the last good answer, kept on disk
)

// Result is what one resolver's answer was judged to be.
type Result string

const (
	ResultGood       Result = "good"       // usable as it is
	ResultSuspicious Result = "suspicious" // usable only if nothing better comes
	ResultFailed     Result = "failed"     // not usable
)

// Trace explains one resolution: what was asked of which resolver, what
// each answered, which answer was chosen and why. It is what `hubtunnel dns`
// prints and what the status API summarises.
type Trace struct {
	Name  string    `json:"name"`
	Time  time.Time `json:"time"`
	Local string    `json:"local,omitempty"` // why the name is local; "" for a public name
	Notes []string  `json:"notes,omitempty"` // e.g. an unreadable resolv.conf
	Asked []Asked   `json:"asked,omitempty"`

	// The outcome. Source is "" when nothing usable was found.
	Source Source       `json:"source,omitempty"`
	Server string       `json:"server,omitempty"` // the resolver, or the file, that gave Addrs
	Addrs  []netip.Addr `json:"addrs,omitempty"`
	// Others are usable addresses from answers that were not chosen (the
	// cache, suspicious answers), tried after Addrs when those fail.
	Others []netip.Addr `json:"others,omitempty"`
	// Order is the order in which a dialer should try the addresses now:
	// addresses that keep failing go last.
	Order []netip.Addr `json:"order,omitempty"`
	Why   string       `json:"why"`
	// TTL is how long the answer is kept in memory; 0 means not at all.
	TTL time.Duration `json:"ttl,omitempty"`
	// FromMemory is set when the answer was still valid in memory and no
	// resolver was asked this time.
	FromMemory bool `json:"from_memory,omitempty"`
}

// Asked is one resolver and what it answered.
type Asked struct {
	Role    Source       `json:"role"` // system or fallback
	Server  string       `json:"server"`
	Queries []Query      `json:"queries"`
	Addrs   []netip.Addr `json:"addrs,omitempty"` // the usable addresses it gave
	Result  Result       `json:"result"`
	Reason  string       `json:"reason,omitempty"` // why it is not good
	ttl     time.Duration
}

// Query is one question (A or AAAA) to one resolver.
type Query struct {
	Type  string        `json:"type"`            // A or AAAA
	Net   string        `json:"net"`             // udp, or tcp after a truncated answer
	Rcode string        `json:"rcode,omitempty"` // NOERROR, NXDOMAIN, SERVFAIL, ...
	Addrs []netip.Addr  `json:"addrs,omitempty"`
	TTL   time.Duration `json:"ttl,omitempty"`
	RTT   time.Duration `json:"rtt"`
	Err   string        `json:"error,omitempty"` // no answer: timeout, refused, malformed
}

// String is the trace for a hub owner, as `hubtunnel dns` prints it.
func (t *Trace) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", t.Name)
	if t.Local != "" {
		fmt.Fprintf(&b, "  a local name (%s): asked only of the hub's own resolvers, never of public ones\n", t.Local)
	}
	for _, n := range t.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	if t.FromMemory {
		fmt.Fprintf(&b, "  an earlier answer, still valid for %s: no resolver asked this time; it was found so:\n", t.TTL.Round(time.Second))
	}
	for _, a := range t.Asked {
		role := "the hub's resolver"
		if a.Role == SourceFallback {
			role = "public resolver"
		}
		fmt.Fprintf(&b, "asked %s %s\n", role, a.Server)
		for _, q := range a.Queries {
			fmt.Fprintf(&b, "  %-4s %-3s %s  (%s)\n", q.Type, q.Net, q.summary(), q.RTT.Round(time.Millisecond/10))
		}
		if a.Reason != "" {
			fmt.Fprintf(&b, "  => %s: %s\n", a.Result, a.Reason)
		} else {
			fmt.Fprintf(&b, "  => %s\n", a.Result)
		}
	}
	if t.Source == "" {
		fmt.Fprintf(&b, "no usable answer: %s\n", t.Why)
		return b.String()
	}
	fmt.Fprintf(&b, "chosen: %s from %s", joinAddrs(t.Addrs), t.Source)
	if t.Server != "" {
		fmt.Fprintf(&b, " (%s)", t.Server)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "why: %s\n", t.Why)
	if len(t.Others) > 0 {
		fmt.Fprintf(&b, "also usable if those fail: %s\n", joinAddrs(t.Others))
	}
	if len(t.Order) > 1 {
		fmt.Fprintf(&b, "order of connection attempts: %s\n", joinAddrs(t.Order))
	}
	return b.String()
}

func (q Query) summary() string {
	if q.Err != "" {
		return "no answer: " + q.Err
	}
	if len(q.Addrs) == 0 {
		if q.Rcode == "NOERROR" {
			return "NOERROR, no address"
		}
		return q.Rcode
	}
	return fmt.Sprintf("%s %s (ttl %s)", q.Rcode, joinAddrs(q.Addrs), q.TTL)
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
