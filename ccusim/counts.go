package ccusim

import (
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
)

// CountsPath is the WebUI path that answers with Counts as JSON. Requests
// for it are not counted.
const CountsPath = "/api/requests"

// Counts is what reached a Sim: requests per service ("webui", "rf", …),
// and how many of them carried a credential of hubtunnel's relay (an app
// token in Authorization, or the relay's session cookie), which the relay
// must never pass on to a hub.
type Counts struct {
	Requests         map[string]int `json:"requests"`
	RelayCredentials int            `json:"relay_credentials"`
}

// Counts returns what reached the Sim so far.
func (s *Sim) Counts() Counts { return s.counts.snapshot() }

type counts struct {
	mu    sync.Mutex
	reqs  map[string]int
	creds int
}

func (c *counts) count(service string, r *http.Request) {
	if service == "webui" && r.URL.Path == CountsPath {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reqs == nil {
		c.reqs = map[string]int{}
	}
	c.reqs[service]++
	if carriesRelayCredential(r) {
		c.creds++
	}
}

func (c *counts) snapshot() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := Counts{Requests: map[string]int{}, RelayCredentials: c.creds}
	for k, v := range c.reqs {
		out.Requests[k] = v
	}
	return out
}

// carriesRelayCredential reports whether r holds an app token ("htk_") in
// any header, Basic-encoded or not, or the relay's session cookie.
func carriesRelayCredential(r *http.Request) bool {
	for name, vs := range r.Header {
		for _, v := range vs {
			if strings.Contains(v, "htk_") {
				return true
			}
			if name == "Authorization" {
				if b64, ok := strings.CutPrefix(v, "Basic "); ok {
					if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64)); err == nil && strings.Contains(string(dec), "htk_") {
						return true
					}
				}
			}
		}
	}
	for _, ck := range r.Cookies() {
		if ck.Name == "__Host-hubtunnel" || ck.Name == "hubtunnel" {
			return true
		}
	}
	return false
}
