package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// TestProxy brings the tunnel up through a real HTTP CONNECT proxy
// (tinyproxy), as on a network that only lets a proxy out.
func TestProxy(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{})
	proxyAddr, logFile := startTinyproxy(t, s.agentPort)

	s.startAgent(agentOpts{proxy: "http://" + proxyAddr})
	s.waitConnected(15 * time.Second)
	s.mustGetWebUI()

	want := fmt.Sprintf("CONNECT 127.0.0.1:%d", s.agentPort)
	poll.Until(t, 5*time.Second, "tinyproxy's log to show "+want, func() bool {
		return strings.Contains(readFileString(logFile), want)
	})
}
