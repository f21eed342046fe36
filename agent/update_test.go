package agent

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/config"
	"github.com/hubtunnel/hubtunnel/hubinfo"
	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/selfupdate"
)

func TestWindow(t *testing.T) {
	loc := time.FixedZone("CET", 3600)
	at := func(day, h, m int) time.Time { return time.Date(2026, 11, day, h, m, 0, 0, loc) }
	for _, c := range []struct {
		window   string
		now      time.Time
		from, to time.Time // next(now, 0) and next(now, almost 1)
	}{
		{"03:00-05:00", at(23, 1, 0), at(23, 3, 0), at(23, 5, 0)},
		{"03:00-05:00", at(23, 4, 0), at(23, 4, 0), at(23, 5, 0)},
		{"03:00-05:00", at(23, 5, 0), at(24, 3, 0), at(24, 5, 0)},
		{"03:00-05:00", at(23, 12, 0), at(24, 3, 0), at(24, 5, 0)},
		{"23:00-01:00", at(23, 0, 30), at(23, 0, 30), at(23, 1, 0)},
		{"23:00-01:00", at(23, 22, 0), at(23, 23, 0), at(24, 1, 0)},
		{"00:00-24:00", at(23, 12, 0), at(23, 12, 0), at(24, 0, 0)},
	} {
		w, err := parseWindow(c.window)
		if err != nil {
			t.Fatalf("%s: %v", c.window, err)
		}
		if got := w.next(c.now, 0); !got.Equal(c.from) {
			t.Errorf("%s at %s: next(0) = %s, want %s", c.window, c.now.Format("15:04"), got, c.from)
		}
		if got := w.next(c.now, 0.999999); got.Before(c.to.Add(-time.Second)) || got.After(c.to) {
			t.Errorf("%s at %s: next(1) = %s, want about %s", c.window, c.now.Format("15:04"), got, c.to)
		}
	}
	for _, bad := range []string{"", "3-5", "03:00", "25:00-05:00", "03:60-05:00", "03:00-24:30", "04:00-04:00", "03:00 - 05:00x"} {
		if _, err := parseWindow(bad); err == nil {
			t.Errorf("parseWindow(%q) accepted it", bad)
		}
	}
	if got := nextDaily(at(23, 12, 0), 11*60); !got.Equal(at(24, 11, 0)) {
		t.Errorf("nextDaily = %s", got)
	}
	if got := nextDaily(at(23, 12, 0), 13*60); !got.Equal(at(23, 13, 0)) {
		t.Errorf("nextDaily = %s", got)
	}
}

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
	if !u.IsAuto() || u.Window != "03:00-05:00" || u.url.String() != "http://100.96.0.1:80/releases/" || u.DownloadDir != "/usr/local/tmp" || u.healthTimeout != 2*time.Minute {
		t.Errorf("defaults: %+v, url %s", u, u.url)
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
		update: func(u *UpdateConfig) {
			u.PublicKey = selfupdate.FormatPublicKey(key.Public().(ed25519.PublicKey))
		},
	}, "alpha")
	a := tb.agents["alpha"]

	post := func(path, contentType string) (int, map[string]json.RawMessage) {
		resp, err := http.Post("http://"+a.uiLn.Addr().String()+path, contentType, bytes.NewReader([]byte("{}")))
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

// TestMain lets the test binary stand in for a downloaded agent: with
// AGENT_TEST_VERSION set, "version" prints it.
func TestMain(m *testing.M) {
	if v := os.Getenv("AGENT_TEST_VERSION"); v != "" && len(os.Args) == 2 && os.Args[1] == "version" {
		fmt.Println(v)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestAutomaticUpdate: with auto on, the check finds a newer release, plans
// its install inside the window, downloads and verifies it there, and
// starts the installer with the update lock. (The installer itself, the
// restart and the rollback run with the real binaries in e2e.)
func TestAutomaticUpdate(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	arch := hubinfo.Detect().Arch
	if arch == "" {
		t.Skip("no release architecture for this machine")
	}
	t.Setenv("AGENT_TEST_VERSION", "0.2.0")

	releases := t.TempDir()
	_, key, _ := ed25519.GenerateKey(nil)
	bin, _ := os.ReadFile(self)
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	zw.Write(bin)
	zw.Close()
	os.WriteFile(filepath.Join(releases, "agent.gz"), gz.Bytes(), 0o644)
	sum := sha256.Sum256(gz.Bytes())
	m := selfupdate.Manifest{Version: "0.2.0", Released: time.Now().UTC(), Artifacts: map[string]selfupdate.Artifact{
		arch: {URL: "agent.gz", Size: int64(gz.Len()), SHA256: hex.EncodeToString(sum[:])},
	}}
	data, _ := selfupdate.Sign(m, key)
	os.WriteFile(filepath.Join(releases, "manifest.json"), data, 0o644)

	// The "installed binary" records how the agent starts the installer,
	// then waits (at most 30 s) to be let go.
	installed := filepath.Join(t.TempDir(), "hubtunnel")
	record, letGo := installed+".args", installed+".done"
	os.WriteFile(installed, []byte(`#!/bin/sh
echo "$@" > "$0.args.tmp"; ls -l /proc/$$/fd/3 >> "$0.args.tmp" 2>&1; mv "$0.args.tmp" "$0.args"
i=0; while [ ! -f "$0.done" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
`), 0o755)
	downloads := t.TempDir()
	tb := newTestbedWith(t, testbedOpts{
		releasesDir: releases,
		version:     "0.1.0",
		update: func(u *UpdateConfig) {
			u.PublicKey = selfupdate.FormatPublicKey(key.Public().(ed25519.PublicKey))
			u.Binary = installed
			u.DownloadDir = downloads
		},
	}, "alpha")
	a := tb.agents["alpha"]
	if a.upd.firstCheck < 2*time.Minute {
		t.Errorf("first check %v after start: too soon for a fleet that restarts together", a.upd.firstCheck)
	}

	// A second updater on the same agent, due at once, with a window open now.
	u := newUpdater(a)
	u.firstCheck = 0
	u.random = func() float64 { return 0 }
	now := time.Now()
	open := now.Hour()*60 + now.Minute()
	u.cfg.window = window{start: open, end: (open + 3) % (24 * 60)}
	a.wg.Add(1)
	go u.run()

	poll.Until(t, 30*time.Second, "the installer to be started", func() bool {
		_, err := os.Stat(record)
		return err == nil
	})
	args, _ := os.ReadFile(record)
	want := "update apply --config " + a.cfg.path + " --file " + downloads + "/"
	if !strings.HasPrefix(string(args), want) || !strings.Contains(string(args), "--from 0.1.0 --to 0.2.0") {
		t.Errorf("installer started as %q, want %q... --from 0.1.0 --to 0.2.0", args, want)
	}
	if !strings.Contains(string(args), selfupdate.LockFile) {
		t.Errorf("the installer did not get the update lock as fd 3: %q", args)
	}
	st := u.Status()
	if st.Latest != "0.2.0" || !st.Available || st.Installing != "0.2.0" {
		t.Errorf("update status %+v", st)
	}
	// An installer that ends under a live agent has failed before the
	// restart: nothing is being installed any more.
	os.WriteFile(letGo, nil, 0o644)
	poll.Until(t, 10*time.Second, "installing to be cleared", func() bool { return u.Status().Installing == "" })
	files, _ := os.ReadDir(downloads)
	if len(files) != 1 {
		t.Fatalf("downloads: %v", files)
	}
	if got, _ := os.ReadFile(filepath.Join(downloads, files[0].Name())); !bytes.Equal(got, bin) {
		t.Errorf("the verified download is not the release's binary")
	}
}
