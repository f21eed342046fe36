package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStatusCommand: what a hub owner sees first over SSH. `hubtunnel
// status` says in words that the tunnel is up and where to; --json is the
// status API's answer; with the agent stopped it says so and exits 1.
func TestStatusCommand(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{})
	s.startAgent(agentOpts{})
	s.waitConnected(15 * time.Second)
	conf := filepath.Join(s.dir, "hub.toml")

	out := run(t, bin.hubtunnel, "status", "--config", conf)
	for _, want := range []string{
		": connected: the hub is reachable through the relay\n",
		"\nhub name:        demo\n",
		fmt.Sprintf("\nrelay:           127.0.0.1:%d over TCP (hubrelay/", s.agentPort),
		"\nconnected since: ",
		"\ntunnel address:  100.96.0.2\n",
		"\nsessions:        0 open, 0 since the agent started\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("hubtunnel status lacks %q:\n%s", want, out)
		}
	}

	out = run(t, bin.hubtunnel, "status", "--config", conf, "--json")
	var st status
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.State != "connected" || st.Name != "demo" || st.TunnelIP != "100.96.0.2" {
		t.Errorf("hubtunnel status --json: %v\n%s", err, out)
	}

	s.agent.stop(t)
	out, err := runErr(bin.hubtunnel, "status", "--config", conf)
	var exit *exec.ExitError
	if want := "hubtunnel is not running (no answer on " + s.uiAddr + ")\n"; !errors.As(err, &exit) || exit.ExitCode() != 1 || out != want {
		t.Errorf("hubtunnel status with the agent stopped: %v, %q; want exit status 1 and %q", err, out, want)
	}
}
