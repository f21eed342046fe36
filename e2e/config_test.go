package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigErrors starts hubtunnel and hubrelay with broken configs: each
// must refuse to start with one clear line that names the file, the line
// and the key, and must leave nothing behind (no key file made).
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	const relayKey = "koupVBjnqeNJyBZKQq9MFFHGq2YsgHpiMMnPW6rSY1I=" // any valid public key
	agentBase := `name = "demo"
relay = "127.0.0.1:7443"
relay_public_key = "` + relayKey + `"
tunnel_ip = "100.96.0.2"
ui_listen = "127.0.0.1:0"
`
	relayBase := `agent_listen = "127.0.0.1:0"
agent_listen_udp = "off"
domain = "localhost"
private_key_file = "relay.key"
`
	for _, tc := range []struct {
		name   string
		binary string // "hubtunnel" or "hubrelay"
		config string // "" means: the file does not exist
		want   []string
	}{
		{"agent unknown key", "hubtunnel", agentBase + "colour = \"blue\"\n", []string{"config.toml:6", `"colour"`, "unknown key"}},
		{"agent bad transport", "hubtunnel", agentBase + "transport = \"quic\"\n", []string{"config.toml:6", "transport", `"quic"`}},
		{"agent mtu of the wrong type", "hubtunnel", agentBase + "mtu = \"big\"\n", []string{"config.toml:6", "mtu"}},
		{"agent missing file", "hubtunnel", "", []string{"config.toml", "no such file"}},
		{"relay bad hub key", "hubrelay", relayBase + "\n[[hub]]\nname = \"demo\"\npublic_key = \"not-a-key\"\ntunnel_ip = \"100.96.0.2\"\n",
			[]string{"config.toml:8", "public_key", `"demo"`, "not a base64-encoded 32-byte WireGuard key"}},
		{"relay unknown key", "hubrelay", relayBase + "port_ofset = 1000\n", []string{"config.toml:5", `"port_ofset"`, "unknown key"}},
		{"relay missing file", "hubrelay", "", []string{"config.toml", "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "config.toml")
			if tc.config != "" {
				writeFile(t, path, tc.config)
			}
			exe := map[string]string{"hubtunnel": bin.hubtunnel, "hubrelay": bin.hubrelay}[tc.binary]
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, exe, "run", "--config", path)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			msg := strings.TrimSpace(stderr.String())
			var exit *exec.ExitError
			switch {
			case ctx.Err() != nil:
				t.Fatalf("%s started with a broken config (killed after 10 s); stderr:\n%s", tc.binary, msg)
			case !errors.As(err, &exit) || exit.ExitCode() == 0:
				t.Fatalf("%s run: %v; want a non-zero exit", tc.binary, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("stderr %q does not contain %q", msg, w)
				}
			}
			if strings.Count(msg, "\n") > 0 || strings.Contains(msg, "goroutine ") {
				t.Errorf("want one clear line on stderr, got:\n%s", msg)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if e.Name() != "config.toml" {
					t.Errorf("%s left %s behind after refusing its config", tc.binary, e.Name())
				}
			}
		})
	}
}
