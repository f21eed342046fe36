package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// TestWireGuardInterop runs the agent with transport "udp" against a
// standard WireGuard server (Debian's wireguard-go on a TUN device, set up
// with wg and ip) in a network namespace of its own. A request from the
// namespace goes through the kernel's interface, WireGuard over UDP, the
// agent's firewall and netstack to ccusim. The agent's firewall must drop
// what is not allowed: an unmapped port, and a source outside
// allowed_cidrs.
func TestWireGuardInterop(t *testing.T) {
	t.Parallel()
	needRoot(t, "for a network namespace and a TUN device")
	ip := need(t, "to make the network namespace", "ip")
	wg := need(t, "to configure the WireGuard server", "wg")
	wggo := need(t, "as the standard WireGuard server", "wireguard-go")
	ss := need(t, "to see wireguard-go listen", "ss")
	py := need(t, "to make requests inside the namespace", "python3")
	fetch, err := filepath.Abs("testdata/fetch.py")
	if err != nil {
		t.Fatal(err)
	}

	// Unique names: the namespace, and the interface, whose UAPI socket
	// lives in the shared /var/run/wireguard.
	ns, in := newNetns(t, ip, "ht-e2e")
	dev := fmt.Sprintf("htwg%d", os.Getpid()%10000000)
	dir := t.TempDir()

	// Keys: the server's from wg, the hub's from hubtunnel; both tools must
	// agree on the format.
	serverKey := filepath.Join(dir, "server.key")
	writeFile(t, serverKey, run(t, wg, "genkey"))
	serverPub := strings.TrimSpace(runStdin(t, readFileString(serverKey), wg, "pubkey"))
	hubKey, hubPub := keypair(t, dir, "hub.key")
	if got := strings.TrimSpace(runStdin(t, readFileString(hubKey), wg, "pubkey")); got != hubPub {
		t.Fatalf("wg pubkey of the hub's key = %s; hubtunnel pubkey = %s", got, hubPub)
	}

	wgProc := start(t, dir, "wireguard-go", in("env", "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=verbose", wggo, dev)...)
	poll.Until(t, 10*time.Second, "wireguard-go to create "+dev, func() bool {
		if !wgProc.alive() {
			t.Fatalf("wireguard-go exited: %v", wgProc.err)
		}
		_, err := runErr(in(wg, "show", dev)...)
		return err == nil
	})
	const wgPort = "51820" // the namespace is ours: nothing else listens there
	run(t, in(wg, "set", dev, "private-key", serverKey, "listen-port", wgPort,
		"peer", hubPub, "allowed-ips", "100.96.0.2/32")...)
	run(t, ip, "-n", ns, "addr", "add", "100.96.0.1/24", "dev", dev)
	run(t, ip, "-n", ns, "link", "set", dev, "up")
	// wireguard-go opens its UDP port when it sees the link go up, a
	// moment later; a handshake sent before would wait 5 s for its retry.
	poll.Until(t, 10*time.Second, "wireguard-go to listen on UDP "+wgPort, func() bool {
		out, _ := runErr(in(ss, "-Hnlu", "sport = :"+wgPort)...)
		return strings.Contains(out, ":"+wgPort)
	})

	sim := simAddrs(t, start(t, dir, "ccusim", in(bin.ccusim, "-name", "nshub",
		"-webui", "0", "-wired", "0", "-rf", "0", "-hmip", "0", "-script", "0")...))
	conf := filepath.Join(dir, "hub.toml")
	writeFile(t, conf, fmt.Sprintf(`name = "nshub"
transport = "udp"
relay = "127.0.0.1:%s"
relay_public_key = %q
private_key_file = "hub.key"
tunnel_ip = "100.96.0.2"
relay_tunnel_ip = "100.96.0.1"
ui_listen = "127.0.0.1:8099"
proxy = "none"

%s`, wgPort, serverPub, targets(sim)))
	agent := start(t, dir, "agent", in(bin.hubtunnel, "run", "--config", conf)...)

	// fetchIn runs fetch.py in the namespace; ok is false if it could not
	// connect or got no answer in time.
	fetchIn := func(timeout int, url string, source ...string) (code int, body string, ok bool) {
		args := append(in(py, fetch, strconv.Itoa(timeout), url), source...)
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeout+10)*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).Output()
		if err != nil {
			return 0, "", false
		}
		first, rest, _ := strings.Cut(string(out), "\n")
		code, _ = strconv.Atoi(first)
		return code, rest, true
	}
	nsStatus := func() status {
		t.Helper()
		code, body, ok := fetchIn(5, "http://127.0.0.1:8099/api/status")
		var st status
		if !ok || code != 200 || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("agent status API in the namespace: %d %q (ok %v)", code, body, ok)
		}
		return st
	}

	began := time.Now()
	poll.Until(t, 20*time.Second, "the agent to report state \"connected\"", func() bool {
		if !agent.alive() {
			t.Fatalf("agent exited: %v", agent.err)
		}
		code, body, ok := fetchIn(5, "http://127.0.0.1:8099/api/status")
		return ok && code == 200 && strings.Contains(body, `"state": "connected"`)
	})

	t.Logf("agent connected over UDP %v after it started", time.Since(began).Round(time.Millisecond))
	code, body, ok := fetchIn(10, "http://100.96.0.2:80/")
	if !ok || code != 200 || !strings.Contains(body, "HomeMatic WebUI") {
		t.Fatalf("GET http://100.96.0.2:80/ from the WireGuard server: %d, ok %v, body %.200q", code, ok, body)
	}

	hs := run(t, in(wg, "show", dev, "latest-handshakes")...)
	peer, ts, _ := strings.Cut(strings.TrimSpace(hs), "\t")
	if n, _ := strconv.ParseInt(ts, 10, 64); peer != hubPub || n <= 0 {
		t.Errorf("wg show %s latest-handshakes = %q; want a handshake with %s", dev, hs, hubPub)
	}

	// The firewall: an unmapped port, then a source outside allowed_cidrs.
	dropped := nsStatus().DroppedPackets
	if _, _, ok := fetchIn(2, "http://100.96.0.2:9999/"); ok {
		t.Errorf("a request to unmapped port 9999 got an answer; the agent must drop it")
	}
	poll.Until(t, 5*time.Second, "dropped_packets to count the packets to port 9999", func() bool {
		return nsStatus().DroppedPackets > dropped
	})

	dropped = nsStatus().DroppedPackets
	run(t, ip, "-n", ns, "addr", "add", "100.96.0.77/24", "dev", dev)
	if code, _, ok := fetchIn(2, "http://100.96.0.2:80/", "100.96.0.77"); ok {
		t.Errorf("a request from 100.96.0.77 (outside allowed_cidrs) got HTTP %d; the agent must drop it", code)
	}
	poll.Until(t, 5*time.Second, "dropped_packets to count the packets from 100.96.0.77", func() bool {
		return nsStatus().DroppedPackets > dropped
	})

	// What is allowed still works.
	if code, body, ok := fetchIn(10, "http://100.96.0.2:80/"); !ok || code != 200 || !strings.Contains(body, "HomeMatic WebUI") {
		t.Errorf("GET http://100.96.0.2:80/ after the dropped requests: %d, ok %v", code, ok)
	}
}

// runStdin is run with stdin.
func runStdin(t *testing.T, stdin string, argv ...string) string {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(argv, " "), err)
	}
	return string(out)
}
