package selfupdate

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/localapi"
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
		{" 3:00-5:0 ", at(23, 1, 0), at(23, 3, 0), at(23, 5, 0)},
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
	for _, bad := range []string{"", "3-5", "03:00", "25:00-05:00", "03:60-05:00", "03:00-24:30", "04:00-04:00", "03:00 - 05:00x", "03:00-05:00x", "03:00-05:00-06:00", "+3:00-05:00", "003:00-05:00", "03:-05:00", "03:00-5", "3:00-5:00 x"} {
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

// TestAutomaticUpdate: with auto on, the check finds a newer release, plans
// its install inside the window, downloads and verifies it there, and
// starts the installer with the update lock. (The installer itself, the
// restart and the rollback run with the real binaries in e2e; the check
// through the tunnel in package agent.)
func TestAutomaticUpdate(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SELFUPDATE_TEST_AGENT_VERSION", "0.2.0")
	rs := newReleaseServer(t)
	bin, _ := os.ReadFile(self)
	rs.publish(t, "0.2.0", bin, nil)

	// The "installed binary" records how the updater starts the installer,
	// then waits (at most 30 s) to be let go.
	installed := filepath.Join(t.TempDir(), "hubtunnel")
	record, letGo := installed+".args", installed+".done"
	os.WriteFile(installed, []byte(`#!/bin/sh
echo "$@" > "$0.args.tmp"; ls -l /proc/$$/fd/3 >> "$0.args.tmp" 2>&1; mv "$0.args.tmp" "$0.args"
i=0; while [ ! -f "$0.done" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
`), 0o755)
	t.Cleanup(func() { os.WriteFile(letGo, nil, 0o644) })
	downloads := t.TempDir()
	cfg := &Config{
		URL:         rs.srv.URL + "/",
		PublicKey:   FormatPublicKey(rs.key.Public().(ed25519.PublicKey)),
		Binary:      installed,
		DownloadDir: downloads,
	}
	if err := cfg.Validate(netip.MustParseAddr("100.96.0.1")); err != nil {
		t.Fatal(err)
	}
	u := New(Options{Config: cfg, StateDir: t.TempDir(), ConfigFile: "/etc/hub.toml", Running: "0.1.0", Arch: rs.arch, Logf: t.Logf})
	if u.firstCheck < 2*time.Minute {
		t.Errorf("first check %v after start: too soon for a fleet that restarts together", u.firstCheck)
	}

	// Due at once, with a window open now.
	u.firstCheck = 0
	u.random = func() float64 { return 0 }
	now := time.Now()
	open := now.Hour()*60 + now.Minute()
	cfg.window = window{start: open, end: (open + 3) % (24 * 60)}
	u.Start()
	t.Cleanup(u.Close)

	poll.Until(t, 30*time.Second, "the installer to be started", func() bool {
		_, err := os.Stat(record)
		return err == nil
	})
	args, _ := os.ReadFile(record)
	want := "update apply --config /etc/hub.toml --file " + filepath.Join(downloads, DownloadFolder) + "/"
	binSum := sha256.Sum256(bin)
	if !strings.HasPrefix(string(args), want) || !strings.Contains(string(args), "--sha256 "+hex.EncodeToString(binSum[:])+" --from 0.1.0 --to 0.2.0") {
		t.Errorf("installer started as %q, want %q... --from 0.1.0 --to 0.2.0", args, want)
	}
	if !strings.Contains(string(args), LockFile) {
		t.Errorf("the installer did not get the update lock as fd 3: %q", args)
	}
	if got := ReadLatest(u.dir); got != "0.2.0" {
		t.Errorf("%s = %q", LatestFile, got)
	}
	st := u.Status()
	if st.Latest != "0.2.0" || !st.Available || st.Installing != "0.2.0" {
		t.Errorf("update status %+v", st)
	}
	// An installer that ends under a live agent has failed before the
	// restart: nothing is being installed any more.
	os.WriteFile(letGo, nil, 0o644)
	poll.Until(t, 10*time.Second, "installing to be cleared", func() bool { return u.Status().Installing == "" })
	files, _ := os.ReadDir(filepath.Join(downloads, DownloadFolder))
	if len(files) != 1 {
		t.Fatalf("downloads: %v", files)
	}
	if got, _ := os.ReadFile(filepath.Join(downloads, DownloadFolder, files[0].Name())); !bytes.Equal(got, bin) {
		t.Errorf("the verified download is not the release's binary")
	}
}

// TestInstallFloor: the newest manifest's min_version refuses an older
// release even when a downgrade is asked for, naming the floor; a release
// at the floor may still be installed as a downgrade.
func TestInstallFloor(t *testing.T) {
	rs := newReleaseServer(t)
	rs.publish(t, "0.1.0", []byte("old"), nil)
	rs.publish(t, "0.2.0", []byte("floor"), nil)
	rs.publish(t, "0.4.0", []byte("new"), func(m *Manifest) { m.MinVersion = "0.2.0" })
	cfg := &Config{URL: rs.srv.URL + "/", PublicKey: FormatPublicKey(rs.key.Public().(ed25519.PublicKey)), Binary: filepath.Join(t.TempDir(), "hubtunnel"), DownloadDir: t.TempDir()}
	if err := cfg.Validate(netip.MustParseAddr("100.96.0.1")); err != nil {
		t.Fatal(err)
	}
	u := New(Options{Config: cfg, StateDir: t.TempDir(), Running: "0.4.0", Arch: rs.arch, Logf: t.Logf})
	ctx := context.Background()
	_, err := u.Install(ctx, localapi.InstallOptions{Version: "0.1.0", AllowDowngrade: true})
	if err == nil || !strings.Contains(err.Error(), "0.1.0 is older than 0.2.0, the oldest version the releases still allow") {
		t.Errorf("Install of 0.1.0 below the floor 0.2.0: %v", err)
	}
	// At the floor: refused only later, by CheckBinary (the "binary" is
	// text), so past the floor and the downgrade check.
	_, err = u.Install(ctx, localapi.InstallOptions{Version: "0.2.0", AllowDowngrade: true})
	if err == nil || !strings.Contains(err.Error(), "not a Linux program") {
		t.Errorf("Install of 0.2.0 at the floor: %v, want it past the floor", err)
	}
	_, err = u.Install(ctx, localapi.InstallOptions{Version: "0.2.0"})
	if err == nil || !strings.Contains(err.Error(), "a downgrade must be asked for explicitly") {
		t.Errorf("Install of 0.2.0 without allow_downgrade: %v", err)
	}
}

func TestUpdaterCloseWithoutStartAndTwice(t *testing.T) {
	cfg := &Config{}
	if err := cfg.Validate(netip.MustParseAddr("100.96.0.1")); err != nil {
		t.Fatal(err)
	}
	u := New(Options{Config: cfg, StateDir: t.TempDir(), Running: "0.1.0"})
	u.Close()
	u.Close()
	u.Start() // after Close: does nothing
	u = New(Options{Config: cfg, StateDir: t.TempDir(), Running: "0.1.0"})
	u.Start()
	u.Close()
	u.Close()
}
