package uplink

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"testing"
)

// TestDialerReport: every resolved address tried is reported, a failing
// one as failed, the one that connects as working; IP literals are not.
func TestDialerReport(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	// Nothing listens on 127.0.0.2 at that port: the listener is bound to
	// 127.0.0.1 alone.
	dead, live := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1")
	type report struct {
		addr netip.Addr
		ok   bool
	}
	var mu sync.Mutex
	var got []report
	d := &Dialer{
		LookupHost: func(context.Context, string) ([]netip.Addr, error) { return []netip.Addr{dead, live}, nil },
		Report: func(a netip.Addr, ok bool) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, report{a, ok})
		},
	}
	c, err := d.Dial(context.Background(), net.JoinHostPort("relay.test", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if want := []report{{dead, false}, {live, true}}; !slices.Equal(got, want) {
		t.Errorf("reports %v, want %v", got, want)
	}
	got = nil
	c, err = d.Dial(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if len(got) != 0 {
		t.Errorf("an IP literal was reported: %v", got)
	}
}
