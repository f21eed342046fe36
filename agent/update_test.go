package agent

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/config"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/selfupdate"
)

func TestUpdateConfigErrors(t *testing.T) {
	base := `relay = "relay.example:7443"
relay_public_key = "r2dsDlU7K8xZuk+hFigsxloGMn8uD/G5mr9HxKMTPzw="
tunnel_ip = "100.96.0.2"
[update]
`
	for _, c := range []struct{ conf, key string }{
		{`window = "3 to 5"`, "update.window"},
		{`url = "ftp://relay/releases/"`, "update.url"},
		{`url = "/releases"`, "update.url"},
		{`public_key = "not a key"`, "update.public_key"},
		{`restart = []`, "update.restart"},
		{`health_timeout = "1s"`, "update.health_timeout"},
		{`autoo = true`, "update.autoo"},
	} {
		err := config.Parse("hub.toml", []byte(base+c.conf+"\n"), &Config{})
		if err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%s: error %v, want one for key %s", c.conf, err, c.key)
		}
	}
	var cfg Config
	if err := config.Parse("hub.toml", []byte(base), &cfg); err != nil {
		t.Fatal(err)
	}
	u := cfg.Update
	if !u.IsAuto() || u.Window != "03:00-05:00" || u.ReleaseURL().String() != "http://100.96.0.1:80/releases/" || u.DownloadDir != "/usr/local/tmp" || cfg.Installer(nil).HealthTimeout != 2*time.Minute {
		t.Errorf("defaults: %+v, url %s", u, u.ReleaseURL())
	}
	if got := cfg.releaseService(); got != netip.MustParseAddrPort("100.96.0.1:80") {
		t.Errorf("releaseService = %v", got)
	}
}

// publish signs a manifest of version v into dir.
func publish(t *testing.T, dir string, key ed25519.PrivateKey, v string) {
	t.Helper()
	m := selfupdate.Manifest{Version: v, Released: time.Now().UTC(), Artifacts: map[string]selfupdate.Artifact{
		"amd64": {URL: "hubtunnel-" + v + "-linux-amd64.gz", Size: 1, SHA256: strings.Repeat("0", 64)},
	}}
	data, err := selfupdate.Sign(m, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUpdateCheckThroughTheTunnel: the agent asks the relay for the newest
// release through the tunnel (the firewall admits the replies), records
// it for update-check.cgi and shows it in the status API.
func TestUpdateCheckThroughTheTunnel(t *testing.T) {
	releases := t.TempDir()
	_, key, _ := ed25519.GenerateKey(nil)
	publish(t, releases, key, "0.2.0")
	tb := newTestbedWith(t, testbedOpts{
		releasesDir: releases,
		version:     "0.1.0",
		update: func(u *selfupdate.Config) {
			u.PublicKey = selfupdate.FormatPublicKey(key.Public().(ed25519.PublicKey))
		},
	}, "alpha")
	a := tb.agents["alpha"]

	post := func(path, contentType string) (int, map[string]json.RawMessage) {
		req, _ := http.NewRequest("POST", "http://"+a.uiLn.Addr().String()+path, bytes.NewReader([]byte("{}")))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Authorization", "Bearer "+a.APIToken())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ans map[string]json.RawMessage
		json.NewDecoder(resp.Body).Decode(&ans)
		return resp.StatusCode, ans
	}
	if code, _ := post("/api/update/check", "text/plain"); code != http.StatusUnsupportedMediaType {
		t.Errorf("check without a JSON body: %d", code)
	}
	code, ans := post("/api/update/check", "application/json")
	var st localapi.UpdateStatus
	json.Unmarshal(ans["update"], &st)
	if code != http.StatusOK || st.Latest != "0.2.0" || !st.Available || st.CheckedAt.IsZero() {
		t.Fatalf("check: %d %s", code, ans["update"])
	}
	if got := selfupdate.ReadLatest(a.cfg.dir); got != "0.2.0" {
		t.Errorf("update-latest = %q", got)
	}
	if s := a.Status(); s.Update == nil || s.Update.Latest != "0.2.0" {
		t.Errorf("status update = %+v", s.Update)
	}
	if d := a.fw.Stats().Dropped(); d != 0 {
		t.Errorf("the firewall dropped %d packets of the release server's replies", d)
	}

	// A manifest signed by someone else is refused, and the last good
	// answer stays.
	_, other, _ := ed25519.GenerateKey(nil)
	publish(t, releases, other, "6.6.6")
	code, ans = post("/api/update/check", "application/json")
	json.Unmarshal(ans["update"], &st)
	if code != http.StatusBadGateway || !strings.Contains(string(ans["error"]), "signature does not match") || st.Latest != "0.2.0" {
		t.Errorf("check of a forged manifest: %d %s", code, ans)
	}
}
