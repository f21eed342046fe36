package e2e

import (
	"encoding/json"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// TestRelayLogsJSON runs the relay with --log-format json while a hub
// connects and a user fetches its WebUI: every line the relay writes is
// one JSON object with time, level and msg; the hub's connect line and
// the request line carry the hub, the user and the remote address as
// fields; and no line holds the app token or the owner's password.
func TestRelayLogsJSON(t *testing.T) {
	s := newHub(t, setupOpts{})
	if out, err := runErr(append(s.bed.Args(bins), "--log-format", "xml")...); err == nil || !strings.Contains(out, "use text or json") {
		t.Errorf("hubrelay run --log-format xml: %v\n%s", err, out)
	}
	s.relay.stop(t)
	s.relay = start(t, s.dir, "relay-json", append(s.bed.Args(bins), "--log-format", "json")...)
	poll.Until(t, 10*time.Second, "the relay to listen", func() bool {
		if !s.relay.alive() {
			t.Fatalf("relay exited: %v\n%s", s.relay.err, s.relay.logText())
		}
		return strings.Contains(s.relay.logText(), testbed.RelayReady)
	})
	s.startAgent(agentOpts{})
	s.waitConnected(30 * time.Second)
	s.mustGetWebUI()

	var lines []map[string]any
	find := func(msg string) map[string]any {
		for _, l := range lines {
			if l["msg"] == msg && l["hub"] == "demo" {
				return l
			}
		}
		return nil
	}
	poll.Until(t, 10*time.Second, "the relay to log the request", func() bool {
		lines = nil
		for i, text := range strings.Split(strings.TrimSuffix(s.relay.logText(), "\n"), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(text), &m); err != nil {
				t.Fatalf("line %d of the relay's log is no JSON object (%v): %s", i+1, err, text)
			}
			for _, k := range []string{"time", "level", "msg"} {
				if v, _ := m[k].(string); v == "" {
					t.Fatalf("line %d has no %s: %s", i+1, k, text)
				}
			}
			if _, err := time.Parse(time.RFC3339, m["time"].(string)); err != nil {
				t.Errorf("line %d: time: %v", i+1, err)
			}
			lines = append(lines, m)
		}
		return find("request") != nil
	})
	if c := find("hub connected"); c == nil || !strings.HasPrefix(str(c["remote"]), "127.0.0.1:") || c["transport"] != "tcp" {
		t.Errorf("the hub's connect line: %v", c)
	}
	if r := find("request"); str(r["user"]) == "" || !strings.HasPrefix(str(r["remote"]), "127.0.0.1:") || r["port"] != float64(80) || r["status"] != float64(200) || r["session"] == nil {
		t.Errorf("the request line: %v", r)
	}
	// Without GOMAXPROCS in its environment the relay runs on one P fewer
	// than the machine's cores (cmd/hubrelay relayProcs), and says so.
	want := max(1, runtime.GOMAXPROCS(0)-1)
	if v := os.Getenv("GOMAXPROCS"); v != "" {
		want, _ = strconv.Atoi(v)
	}
	var ready map[string]any
	for _, l := range lines {
		if l["msg"] == "agents connect to this relay" {
			ready = l
		}
	}
	if ready == nil || ready["procs"] != float64(want) {
		t.Errorf("the relay's ready line: %v; want procs %d (the machine's %d cores, less one)", ready, want, runtime.GOMAXPROCS(0))
	}
	log := s.relay.logText()
	for what, secret := range map[string]string{"the app token": s.bed.Token("demo"), "the owner's password": s.bed.OwnerPassword} {
		if secret == "" || strings.Contains(log, secret) {
			t.Errorf("the relay's log holds %s", what)
		}
	}
}

func str(v any) string { s, _ := v.(string); return s }
