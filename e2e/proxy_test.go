package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// TestProxy brings the tunnel up through a real HTTP CONNECT proxy
// (tinyproxy), as on a network that only lets a proxy out.
func TestProxy(t *testing.T) {
	t.Parallel()
	tp := need(t, "as the HTTP CONNECT proxy", "tinyproxy", "/usr/bin/tinyproxy", "/usr/sbin/tinyproxy")
	s := newHub(t, setupOpts{})

	dir := t.TempDir()
	port := freePort(t)
	logFile := filepath.Join(dir, "tinyproxy.log")
	conf := filepath.Join(dir, "tinyproxy.conf")
	writeFile(t, conf, fmt.Sprintf(`Port %d
Listen 127.0.0.1
Allow 127.0.0.1
ConnectPort %d
LogFile %q
LogLevel Connect
PidFile %q
Timeout 600
MaxClients 20
`, port, s.agentPort, logFile, filepath.Join(dir, "tinyproxy.pid")))
	proxy := start(t, dir, "tinyproxy", tp, "-d", "-c", conf)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- tinyproxy LogFile ---\n%s", readFileString(logFile))
		}
	})
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", port)
	poll.Until(t, 10*time.Second, "tinyproxy to listen", func() bool {
		if !proxy.alive() {
			t.Fatalf("tinyproxy exited: %v", proxy.err)
		}
		c, err := net.Dial("tcp", proxyAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	s.startAgent(agentOpts{proxy: "http://" + proxyAddr})
	s.waitConnected(15 * time.Second)
	s.mustGetWebUI()

	want := fmt.Sprintf("CONNECT 127.0.0.1:%d", s.agentPort)
	poll.Until(t, 5*time.Second, "tinyproxy's log to show "+want, func() bool {
		return strings.Contains(readFileString(logFile), want)
	})
}
