package relay

import (
	"context"
	"encoding/hex"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/enroll"
)

// TestPortalAddHubMakesThisRelaysCode: an owner's "Add a hub" in the
// relay's portal gets a code for this relay's enroll_address, kept under
// this relay's key, for a hub they will own — and nothing the relay logs
// names it.
func TestPortalAddHubMakesThisRelaysCode(t *testing.T) {
	tr := startTestRelayWith(t, false, func(c *Config) { c.EnrollAddress = "hubs.example.org:8443" }, "a")
	secret := tr.login(t, "tech", "", 0, time.Time{})
	port := 443 + tr.offset
	origin := fmt.Sprintf("https://localhost:%d", port)
	b := tr.browser(t)
	u, _ := url.Parse(origin)
	b.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-hubtunnel", Value: secret, Path: "/", Secure: true}})

	page := func(resp *http.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %.300q", resp.Request.URL, resp.StatusCode, body)
		}
		return string(body)
	}
	home := page(b.Get(origin + "/"))
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(home)
	if m == nil || !strings.Contains(home, `id="add-hub-form"`) {
		t.Fatalf("the portal's home has no CSRF token or no \"Add a hub\": %.300q", home)
	}
	req, _ := http.NewRequest("POST", origin+"/hub/add", strings.NewReader(url.Values{"csrf": {m[1]}, "name": {"garage"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", origin)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	answer := page(b.Do(req))
	shown := regexp.MustCompile(`id="enroll-code"[^>]*>([^<]+)<`).FindStringSubmatch(answer)
	if shown == nil {
		t.Fatalf("no code on the answer: %.500q", answer)
	}
	code, err := enroll.Parse(html.UnescapeString(shown[1]))
	if err != nil {
		t.Fatalf("the code shown does not parse: %v", err)
	}
	if code.Addr() != "hubs.example.org:8443" {
		t.Errorf("the code names %s, not the relay's enroll_address", code.Addr())
	}
	id := code.ID()
	rec, err := tr.Store().EnrollCodeByID(context.Background(), hex.EncodeToString(id[:]))
	if err != nil {
		t.Fatalf("the code is not this relay's: %v", err)
	}
	if rec.Hub != "garage" || rec.Owner != "tech" || rec.CreatedBy != "tech" || rec.RelayKey != tr.key.Public().String() {
		t.Errorf("stored code for %q of %q by %q under key %s; want hub garage for tech under the relay's key", rec.Hub, rec.Owner, rec.CreatedBy, rec.RelayKey)
	}
	if n := tr.logged(code.String()[len(code.Relay)+1:]); n != 0 {
		t.Errorf("the relay logged the code %d times", n)
	}
}
