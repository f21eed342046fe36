package netstack

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/hubtunnel/hubtunnel/internal/inflight"
	"github.com/hubtunnel/hubtunnel/uplink"
)

// wireguardPair returns two Stacks joined by two real WireGuard devices over
// an in-memory bind. Each device owns its Stack: closing it closes the Stack.
func wireguardPair(tb testing.TB, cfg Config) (a, b *Stack) {
	pair := bindtest.NewChannelBinds()
	return wireguardPairOver(tb, cfg, [2]conn.Bind{pair[0], pair[1]}, nil)
}

// wireguardPairOver is wireguardPair over binds, with each Stack's device
// passed through wrap (if not nil) on its way to WireGuard.
func wireguardPairOver(tb testing.TB, cfg Config, binds [2]conn.Bind, wrap func(i int, dev tun.Device) tun.Device) (a, b *Stack) {
	tb.Helper()
	var priv [2]*ecdh.PrivateKey
	for i := range priv {
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		priv[i] = k
	}
	addrs := [2]netip.Addr{addrA4, addrB4}
	var stacks [2]*Stack
	var devs [2]*device.Device
	for i := range devs {
		cfg.Addrs = []netip.Addr{addrs[i]}
		stacks[i] = newStack(tb, cfg)
		logger := device.NewLogger(device.LogLevelError, fmt.Sprintf("wg%d: ", i))
		dev := stacks[i].Device()
		if wrap != nil {
			dev = wrap(i, dev)
		}
		devs[i] = device.NewDevice(dev, binds[i], logger)
		tb.Cleanup(devs[i].Close)
		err := devs[i].IpcSet(uapi(
			"private_key", hex.EncodeToString(priv[i].Bytes()),
			"listen_port", "0",
			"public_key", hex.EncodeToString(priv[i^1].PublicKey().Bytes()),
			"allowed_ip", netip.PrefixFrom(addrs[i^1], 32).String(),
		))
		if err != nil {
			tb.Fatal(err)
		}
		if err := devs[i].Up(); err != nil {
			tb.Fatal(err)
		}
	}
	// Each device sends to the port the other's bind opened.
	for i := range devs {
		cfg, err := devs[i^1].IpcGet()
		if err != nil {
			tb.Fatal(err)
		}
		var port string
		for line := range strings.Lines(cfg) {
			if p, ok := strings.CutPrefix(strings.TrimSpace(line), "listen_port="); ok {
				port = p
			}
		}
		err = devs[i].IpcSet(uapi(
			"public_key", hex.EncodeToString(priv[i^1].PublicKey().Bytes()),
			"endpoint", "127.0.0.1:"+port,
		))
		if err != nil {
			tb.Fatal(err)
		}
	}
	return stacks[0], stacks[1]
}

// uapi formats key/value pairs for IpcSet.
func uapi(kv ...string) string {
	var b strings.Builder
	for i := 0; i < len(kv); i += 2 {
		fmt.Fprintf(&b, "%s=%s\n", kv[i], kv[i+1])
	}
	return b.String()
}

func TestWireGuardTransfer(t *testing.T) {
	goroutineLeakCheck(t)
	a, b := wireguardPair(t, Config{})
	client, server := connect(t, a, b, addrB4, 443)
	transfer(t, client, server, 4<<20)

	client2, server2 := connect(t, b, a, addrA4, 2000) // and the other way
	transfer(t, client2, server2, 1<<20)
}

func BenchmarkTCPThroughputWireGuard(b *testing.B) {
	a, s := wireguardPair(b, Config{})
	benchmarkThroughput(b, a, s)
}

// TestWireGuardUDPBindBounds runs real WireGuard over real UDP on loopback
// with the agent's uplink.UDPBind on both ends, bounded as the agent bounds
// them, and checks that the bounds are live: packets are counted in on both
// paths (the binds learnt their sessions' indices), never beyond the bound,
// and the data arrives intact both ways.
func TestWireGuardUDPBindBounds(t *testing.T) {
	goroutineLeakCheck(t)
	const bound = 16
	var binds [2]*uplink.UDPBind
	var stacks [2]*Stack
	var inbound [2]*windowProbe
	for i := range binds {
		binds[i] = uplink.NewUDPBind(1420, func() bool { return false }, func(n int) { stacks[i].Sent(n) }, bound)
	}
	wrap := func(i int, dev tun.Device) tun.Device {
		inbound[i] = &windowProbe{Device: dev, w: binds[i].Inbound}
		return uplink.InboundTUN(inbound[i], binds[i].Inbound)
	}
	a, b := wireguardPairOver(t, Config{MTU: 1420, MaxInFlight: bound}, [2]conn.Bind{binds[0], binds[1]}, wrap)
	stacks[0], stacks[1] = a, b

	client, server := connect(t, a, b, addrB4, 443)
	transfer(t, client, server, 8<<20)
	client2, server2 := connect(t, b, a, addrA4, 2000)
	transfer(t, client2, server2, 8<<20)

	for i, p := range inbound {
		if max := p.max.Load(); max == 0 || max > bound {
			t.Errorf("side %d: at most %d packets counted inside WireGuard on the way in; want 1 to %d", i, max, bound)
		}
	}
}

// windowProbe records the most packets w counted in flight when WireGuard
// wrote to the TUN (before InboundTUN counts them out).
type windowProbe struct {
	tun.Device
	w   *inflight.Window
	max atomic.Int64
}

func (p *windowProbe) Write(bufs [][]byte, offset int) (int, error) {
	if n := int64(p.w.Len()); n > p.max.Load() {
		p.max.Store(n)
	}
	return p.Device.Write(bufs, offset)
}
