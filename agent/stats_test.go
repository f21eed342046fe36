package agent

import (
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
)

// fakeBind receives two datagrams per call and sends anything.
type fakeBind struct{ conn.Bind }

func (fakeBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	return []conn.ReceiveFunc{func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		sizes[0], sizes[1] = 148, 32
		return 2, nil
	}}, port, nil
}

func (fakeBind) Send(bufs [][]byte, ep conn.Endpoint) error { return nil }

func TestUDPNetworkViewCountsDatagramsWithHeaders(t *testing.T) {
	b := &countingBind{Bind: fakeBind{}}
	fns, _, _ := b.Open(0)
	bufs := make([][]byte, 4)
	sizes := make([]int, 4)
	if n, _ := fns[0](bufs, sizes, make([]conn.Endpoint, 4)); n != 2 {
		t.Fatalf("received %d", n)
	}
	b.Send([][]byte{make([]byte, 92), make([]byte, 1452), make([]byte, 32)}, nil)
	rx, tx := b.netBytes(false)
	if rx != 148+32+2*28 || tx != 92+1452+32+3*28 {
		t.Errorf("IPv4: rx %d, tx %d; want %d, %d", rx, tx, 148+32+2*28, 92+1452+32+3*28)
	}
	if rx, _ := b.netBytes(true); rx != 148+32+2*48 {
		t.Errorf("IPv6: rx %d, want %d", rx, 148+32+2*48)
	}
}

func TestStatsConfig(t *testing.T) {
	for _, tc := range []struct {
		c  StatsConfig
		ok bool
	}{{StatsConfig{}, true}, {StatsConfig{PlanMB: 500, PlanStartDay: 15}, true}, {StatsConfig{PlanMB: -1}, false}, {StatsConfig{PlanStartDay: 32}, false}} {
		c := tc.c
		if err := c.validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.c, err)
		} else if err != nil && !strings.Contains(err.Error(), "stats.plan_") {
			t.Errorf("%+v: %v does not name the key", tc.c, err)
		}
	}
}
