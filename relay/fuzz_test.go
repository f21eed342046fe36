package relay

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/vpn/noise"
	"github.com/hubtunnel/hubtunnel/wire"
	"golang.zx2c4.com/wireguard/conn"
)

// FuzzAgentInput feeds what an agent controls — a handshake initiation's
// bytes and its Hello's software text — to the relay's readers of them:
// they never panic, and no bytes but a real initiation for the relay's key
// give a key.
func FuzzAgentInput(f *testing.F) {
	relay, err := vpn.GeneratePrivateKey()
	if err != nil {
		f.Fatal(err)
	}
	r, err := noise.NewResponder(relay, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(make([]byte, initiationLen), "hubtunnel/0.2.0 (raspberrymatic 3.79.6 (Raspberry Pi 3, arm64))")
	f.Add([]byte{1, 0, 0, 0}, "hubtunnel/ ((()")
	f.Add(append([]byte{1}, make([]byte, 200)...), "")
	f.Fuzz(func(t *testing.T, msg []byte, software string) {
		if _, ok := r.ReadInitiation(msg); ok {
			t.Fatalf("random bytes read as an initiation for the relay: %x", msg)
		}
		info := parseSoftware(software)
		if len(info.Version)+len(info.Model)+len(info.Firmware) > len(software) {
			t.Fatalf("parseSoftware(%q) = %+v: more than it was given", software, info)
		}
	})
}

// FuzzCookies feeds the Cookie a user sends and the Set-Cookie a hub sends
// through the relay's filters: the relay's session cookie never passes
// either way, and no Domain attribute reaches the user.
func FuzzCookies(f *testing.F) {
	f.Add("a=1; __Host-hubtunnel=secret; b=2", "own=1; Domain=.localhost; Path=/")
	f.Add("hubtunnel=x;;  ;=;", "__Host-hubtunnel=planted; Secure")
	f.Add(" __Host-hubtunnel =x", " hubtunnel=y; DOMAIN=evil ; domain")
	f.Fuzz(func(t *testing.T, cookie, setCookie string) {
		h := http.Header{"Cookie": {cookie}}
		dropRelayCookies(h)
		for _, c := range (&http.Request{Header: h}).Cookies() {
			if isRelayCookie(c.Name) {
				t.Fatalf("Cookie %q passed on %q", cookie, h["Cookie"])
			}
		}
		resp := &http.Response{Header: http.Header{"Set-Cookie": {setCookie}}}
		hubCookies(resp)
		for _, line := range resp.Header["Set-Cookie"] {
			for _, attr := range strings.Split(line, ";")[1:] {
				k, _, _ := strings.Cut(attr, "=")
				if strings.EqualFold(strings.TrimSpace(k), "domain") {
					t.Fatalf("Set-Cookie %q reached the user as %q", setCookie, line)
				}
			}
		}
		for _, c := range resp.Cookies() {
			if isRelayCookie(c.Name) {
				t.Fatalf("Set-Cookie %q set the relay's cookie", setCookie)
			}
		}
	})
}

// FuzzSavedSessions: udp-sessions.json, as a relay left it or damaged, is
// an error or answers to valid addresses, never a panic.
func FuzzSavedSessions(f *testing.F) {
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	f.Add([]byte(`{"written":"2026-12-02T00:00:00Z","sessions":[{"addr":"192.0.2.7:51820","index":7},{"addr":"[2001:db8::1]:4000","index":4294967295}]}`))
	f.Add([]byte(`{"written":"2026-12-01T00:00:00Z","sessions":[]}`))
	f.Add([]byte(`{"sessions":[{"addr":"0.0.0.0:0"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		answers, _, err := parseSavedSessions(data, now, "")
		if err != nil {
			return
		}
		for _, a := range answers {
			ap := a.ep.(*conn.StdNetEndpoint).AddrPort
			if !ap.IsValid() || ap.Port() == 0 {
				t.Fatalf("an answer to %v", ap)
			}
			if _, ok := wire.ParseSessionUnknown(a.msg[:]); !ok {
				t.Fatalf("answer %x is no SessionUnknown", a.msg)
			}
		}
	})
}
