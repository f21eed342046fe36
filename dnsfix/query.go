package dnsfix

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// maxCNAMEs bounds how far an answer's CNAME chain is followed.
const maxCNAMEs = 8

// ask puts A and AAAA for name to one resolver, both at once, and judges
// the answer. local names are judged more leniently: a private address is
// what they are expected to have.
func (r *Resolver) ask(ctx context.Context, role Source, server, name string, local bool) Asked {
	a := Asked{Role: role, Server: server, Queries: make([]Query, 2)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Queries[1] = r.query(ctx, server, name, dns.TypeAAAA)
	}()
	a.Queries[0] = r.query(ctx, server, name, dns.TypeA)
	<-done

	var suspicious, unusable string
	haveTTL := false
	for _, q := range a.Queries {
		for _, ad := range q.Addrs {
			c, why := classify(ad)
			switch {
			case c == classUnusable:
				if unusable == "" {
					unusable = why
				}
			case c == classPrivate && !local:
				if suspicious == "" {
					suspicious = why + " for a public name"
				}
				a.Addrs = append(a.Addrs, ad)
			default:
				a.Addrs = append(a.Addrs, ad)
			}
		}
		if len(q.Addrs) > 0 && (!haveTTL || q.TTL < a.ttl) {
			a.ttl, haveTTL = q.TTL, true
		}
	}
	switch {
	case unusable != "":
		// A resolver that answers with a warning or a block address
		// cannot be trusted for the rest of its answer either.
		a.Addrs, a.Result, a.Reason = nil, ResultFailed, unusable
	case len(a.Addrs) == 0:
		a.Result, a.Reason = ResultFailed, failureReason(a.Queries)
	case suspicious != "":
		a.Result, a.Reason = ResultSuspicious, suspicious
	default:
		a.Result = ResultGood
	}
	return a
}

// failureReason says why two queries gave no address, worst news first.
func failureReason(qs []Query) string {
	has := func(rcode string) bool {
		return slices.ContainsFunc(qs, func(q Query) bool { return q.Rcode == rcode })
	}
	switch {
	case has("NXDOMAIN"):
		return "the name does not exist there (NXDOMAIN)"
	case has("SERVFAIL"):
		return "the resolver failed (SERVFAIL)"
	case has("REFUSED"):
		return "the resolver refused to answer (REFUSED)"
	}
	for _, q := range qs {
		if q.Err != "" {
			return q.Err
		}
	}
	for _, q := range qs {
		if q.Rcode != "NOERROR" {
			return "the resolver answered " + q.Rcode
		}
	}
	return "no address records"
}

// query asks one question over UDP, and again over TCP when the answer is
// truncated.
func (r *Resolver) query(ctx context.Context, server, name string, qtype uint16) Query {
	q := Query{Type: dns.TypeToString[qtype], Net: "udp"}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	start := r.now()
	resp, err := r.exchange(ctx, "udp", m, server)
	if err == nil && resp.Truncated {
		q.Net = "tcp"
		resp, err = r.exchange(ctx, "tcp", m, server)
	}
	q.RTT = r.now().Sub(start)
	if err != nil {
		q.Err = queryError(err)
		return q
	}
	q.Rcode = dns.RcodeToString[resp.Rcode]
	if q.Rcode == "" {
		q.Rcode = "rcode " + strconv.Itoa(resp.Rcode)
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, m.Question[0].Name) || resp.Question[0].Qtype != qtype {
		q.Err = "the answer is for a different question"
		return q
	}
	if resp.Rcode == dns.RcodeSuccess {
		q.Addrs, q.TTL = addresses(resp, m.Question[0].Name, qtype)
	}
	return q
}

func (r *Resolver) exchange(ctx context.Context, network string, m *dns.Msg, server string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	c := &dns.Client{Net: network, Timeout: r.timeout}
	resp, _, err := c.ExchangeContext(ctx, m, server)
	return resp, err
}

// addresses returns the addresses of type qtype that answer qname,
// following CNAMEs, IPv4 before IPv6, and the smallest TTL on the way.
func addresses(resp *dns.Msg, qname string, qtype uint16) ([]netip.Addr, time.Duration) {
	target := strings.ToLower(qname)
	ttl, haveTTL := uint32(0), false
	minTTL := func(t uint32) {
		if !haveTTL || t < ttl {
			ttl, haveTTL = t, true
		}
	}
	for range maxCNAMEs {
		next := ""
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, target) {
				next = strings.ToLower(c.Target)
				minTTL(c.Hdr.Ttl)
				break
			}
		}
		if next == "" {
			break
		}
		target = next
	}
	var addrs []netip.Addr
	for _, rr := range resp.Answer {
		if !strings.EqualFold(rr.Header().Name, target) || rr.Header().Rrtype != qtype {
			continue
		}
		var ip net.IP
		switch v := rr.(type) {
		case *dns.A:
			ip = v.A
		case *dns.AAAA:
			ip = v.AAAA
		}
		a, ok := netip.AddrFromSlice(ip)
		if !ok || slices.Contains(addrs, a.Unmap()) {
			continue
		}
		addrs = append(addrs, a.Unmap())
		minTTL(rr.Header().Ttl)
	}
	if len(addrs) == 0 {
		return nil, 0
	}
	return addrs, time.Duration(ttl) * time.Second
}

// queryError turns a network error into words for a hub owner.
func queryError(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case strings.Contains(err.Error(), "connection refused"):
		return "nothing listens there (connection refused)"
	case strings.Contains(err.Error(), "network is unreachable"), strings.Contains(err.Error(), "no route to host"):
		return "not reachable from here"
	case errors.Is(err, dns.ErrId):
		return "an answer that does not belong to the question"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return "bad answer: " + err.Error()
}
