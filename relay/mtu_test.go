package relay

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// bulkStream is n pseudo-random bytes, the same every time.
func bulkStream(n int64) io.Reader { return io.LimitReader(rand.NewChaCha8([32]byte{7}), n) }

// TestLargeMTUWithOldAndNewPeers: over the TCP transport a new agent and a
// new relay carry packets of the largest MTU a frame takes, and either
// still works with the other from before wire.Features (8 KiB frames, MTU
// 8000, TCP checksums verified): a download and an upload through the
// relay's public port arrive whole, and only two new ends send packets
// over 8000 bytes.
func TestLargeMTUWithOldAndNewPeers(t *testing.T) {
	newAgent := testAgentOpts{mtu: wire.MaxTunnelMTU, features: &wire.Ours}
	oldAgent := testAgentOpts{mtu: 8000}
	tests := []struct {
		name      string
		oldRelay  bool
		agent     testAgentOpts
		wantLarge bool
	}{
		{"new agent, new relay", false, newAgent, true},
		{"agent before Features, new relay", false, oldAgent, false},
		{"new agent, relay before Features", true, newAgent, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := startTestRelayHook(t, false, nil, func(s *Server) { s.legacy = tt.oldRelay }, "a")
			a := startTestAgentOpts(t, tr, tr.keys["a"], "100.96.0.2", vpn.PublicKey{}, tr.PublicKey(), tr.AgentAddr().String(), nil, tt.agent)
			poll.Until(t, 10*time.Second, "the agent's handshake", a.handshaken)

			const n = 8 << 20
			c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "a.localhost"},
			}}
			do := func(method, path string, body io.Reader) []byte {
				t.Helper()
				port := 443 + tr.offset
				req, _ := http.NewRequest(method, fmt.Sprintf("https://127.0.0.1:%d%s", port, path), body)
				req.Host = fmt.Sprintf("a.localhost:%d", port)
				req.SetBasicAuth("hubtunnel", tr.tokens["a"])
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("%s %s: %d %v", method, path, resp.StatusCode, err)
				}
				return b
			}
			want, _ := io.ReadAll(bulkStream(n))
			if got := do("GET", fmt.Sprintf("/bulk?n=%d", n), nil); !bytes.Equal(got, want) {
				t.Fatalf("download: %d bytes, not the %d the hub sent", len(got), n)
			}
			if got, sum := string(do("POST", "/sum", bulkStream(n))), fmt.Sprintf("%x", sha256.Sum256(want)); got != sum {
				t.Fatalf("upload: the hub read %s, want %s", got, sum)
			}

			// The largest packets each way (the agent's stack sees both).
			st := a.stack.Stats()
			in, out := st.BytesIn/max(st.PacketsIn, 1), st.BytesOut/max(st.PacketsOut, 1)
			t.Logf("mean packet: %d bytes in, %d out", in, out)
			if large := in > 8000 && out > 8000; large != tt.wantLarge {
				t.Errorf("mean packet in %d, out %d bytes: over 8000 = %v, want %v", in, out, large, tt.wantLarge)
			}
		})
	}
}
