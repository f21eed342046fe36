package netstack

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/device"
)

// wireguardPair returns two Stacks joined by two real WireGuard devices over
// an in-memory bind. Each device owns its Stack: closing it closes the Stack.
func wireguardPair(tb testing.TB, cfg Config) (a, b *Stack) {
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
	binds := bindtest.NewChannelBinds()
	var stacks [2]*Stack
	var devs [2]*device.Device
	for i := range devs {
		cfg.Addrs = []netip.Addr{addrs[i]}
		stacks[i] = newStack(tb, cfg)
		logger := device.NewLogger(device.LogLevelError, fmt.Sprintf("wg%d: ", i))
		devs[i] = device.NewDevice(stacks[i].Device(), binds[i], logger)
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
