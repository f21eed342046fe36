package main

import (
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/hubinfo"
	"github.com/hubtunnel/hubtunnel/localapi"
)

var (
	now = time.Date(2026, 12, 1, 16, 8, 5, 0, time.UTC)
	hub = hubinfo.Hub{Kind: "raspberrymatic", Firmware: "3.79.6.20241122", Board: "Raspberry Pi 3 Model B Rev 1.2", Arch: "arm64"}
)

// connected is a hub that has been up for two hours.
func connected() localapi.Status {
	return localapi.Status{
		State: localapi.StateConnected, Name: "home", Relay: "relay.example.com:7443", Transport: "tcp",
		TunnelIP: "100.96.0.2", RelaySoftware: "hubrelay/0.1.0",
		ConnectedSince: now.Add(-2*time.Hour - 5*time.Minute), LastHandshake: now.Add(-65 * time.Second),
		BytesRx: 1288490, BytesTx: 353280, OverheadBytes: 12288, SessionsActive: 2, SessionsTotal: 17,
		DNSSource: "system", DNSAnswer: []string{"203.0.113.5", "2001:db8::5"},
		Version: "0.1.0", Hub: hub,
		Update: &localapi.UpdateStatus{Auto: true, Window: "03:00-05:00", Latest: "0.1.0"},
	}
}

// TestWriteStatus: each case changes the connected hub a little and wants
// these lines among the output (one line each, exactly).
func TestWriteStatus(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(*localapi.Status)
		want   []string
		absent []string // the start of lines that must not be there
	}{
		{"connected", func(*localapi.Status) {}, []string{
			"hubtunnel 0.1.0: connected: the hub is reachable through the relay",
			"hub name:        home",
			"relay:           relay.example.com:7443 over TCP (hubrelay/0.1.0)",
			"connected since: 2026-12-01 14:03:05 (2h 5m ago)",
			"last handshake:  2026-12-01 16:07:00 (1m 5s ago)",
			"relay address:   203.0.113.5, 2001:db8::5 (from the hub's own resolver)",
			"tunnel address:  100.96.0.2",
			"data:            1.2 MiB received, 345.0 KiB sent since the agent started (12.0 KiB of tunnel overhead)",
			"sessions:        2 open, 17 since the agent started",
			"this hub:        raspberrymatic 3.79.6.20241122 (Raspberry Pi 3 Model B Rev 1.2, arm64)",
			"updates:         automatic, between 03:00 and 05:00; up to date (newest release 0.1.0)",
		}, []string{"why not:", "dropped:", "resent:", "last update:", "update check:"}},
		{"connecting", func(s *localapi.Status) {
			s.State, s.ConnectedSince, s.LastHandshake = localapi.StateConnecting, time.Time{}, time.Time{}
			s.LastError = "the relay is not accepting connections (is it running?)"
			s.DNSSource, s.DNSAnswer = "cache", []string{"203.0.113.5"}
		}, []string{
			"hubtunnel 0.1.0: not connected: trying to reach the relay",
			"why not:         the relay is not accepting connections (is it running?)",
			"last handshake:  never",
			"relay address:   203.0.113.5 (the last good answer, kept on disk: no resolver answered)",
		}, []string{"connected since:", "WebUI:", "enrolled:"}},
		{"disabled", func(s *localapi.Status) {
			*s = localapi.Status{State: localapi.StateDisabled, Relay: "relay.example.com:7443", Transport: "udp", Version: "0.1.0", Hub: hub}
		}, []string{
			"hubtunnel 0.1.0: switched off (enabled = false in the config)",
			"relay:           relay.example.com:7443 over UDP",
		}, []string{"hub name:", "data:", "last handshake:", "updates:"}},
		{"tls via proxy", func(s *localapi.Status) {
			s.Transport, s.RelayTLS, s.Route = "tls", "relay.example.com:443", "tls via proxy"
		}, []string{"relay:           relay.example.com:443 over TLS via proxy (hubrelay/0.1.0)"}, nil},
		{"auto chose tcp", func(s *localapi.Status) {
			s.Transport, s.RelayTLS, s.Route = "auto", "relay.example.com:443", "tcp"
		}, []string{"relay:           relay.example.com:7443 over TCP, found by transport auto (hubrelay/0.1.0)"}, nil},
		{"auto connecting", func(s *localapi.Status) {
			s.State, s.Transport, s.RelayTLS, s.RelaySoftware = localapi.StateConnecting, "auto", "relay.example.com:443", ""
		}, []string{"relay:           relay.example.com:7443 or relay.example.com:443 over TCP or TLS (transport auto)"}, nil},
		{"unenrolled", func(s *localapi.Status) {
			*s = localapi.Status{State: localapi.StateUnenrolled, Transport: "tcp", Version: "0.1.0", Hub: hub}
		}, []string{
			"hubtunnel 0.1.0: not enrolled: enter the code from your relay's portal (hubtunnel enroll CODE, or the addon's settings page)",
			"this hub:        raspberrymatic 3.79.6.20241122 (Raspberry Pi 3 Model B Rev 1.2, arm64)",
		}, []string{"relay:", "hub name:", "data:", "last handshake:", "tunnel address:"}},
		{"enrolled", func(s *localapi.Status) {
			s.URL, s.Enrolled = "https://home.relay.example.com/", now.Add(-26*time.Hour)
		}, []string{
			"hub name:        home",
			"WebUI:           https://home.relay.example.com/",
			"enrolled:        2026-11-30 14:08:05 (1d 2h ago)",
		}, nil},
		{"small numbers", func(s *localapi.Status) {
			s.BytesRx, s.BytesTx, s.OverheadBytes, s.DroppedPackets = 0, 1023, 1024, 3
			s.TCPRetransmits, s.TCPTimeouts = 12, 1
			s.DNSSource, s.DNSAnswer = "", nil
		}, []string{
			"data:            0 B received, 1023 B sent since the agent started (1.0 KiB of tunnel overhead)",
			"dropped:         3 packets the hub's tunnel firewall did not let in",
			"resent:          12 TCP segments to the relay, lost on the way (retransmission timeouts: 1)",
		}, []string{"relay address:"}},
		{"big numbers", func(s *localapi.Status) {
			s.BytesRx, s.BytesTx = 5<<40, 3<<30+1<<29
			s.ConnectedSince = now.Add(-(3*24 + 4) * time.Hour)
		}, []string{
			"data:            5.0 TiB received, 3.5 GiB sent since the agent started (12.0 KiB of tunnel overhead)",
			"connected since: 2026-11-28 12:08:05 (3d 4h ago)",
		}, nil},
		{"update planned", func(s *localapi.Status) {
			s.Update.Latest, s.Update.Available = "0.2.0", true
			s.Update.PlannedInstall = time.Date(2026, 12, 2, 3, 41, 0, 0, time.UTC)
			s.Update.LastResult = &localapi.UpdateResult{OK: true, From: "0.0.9", To: "0.1.0", Time: now.Add(-24 * time.Hour)}
		}, []string{
			"updates:         automatic, between 03:00 and 05:00; 0.2.0 is available, to be installed at 2026-12-02 03:41",
			"last update:     0.0.9 to 0.1.0, at 2026-11-30 16:08",
		}, nil},
		{"update by hand, failed", func(s *localapi.Status) {
			s.Update.Auto, s.Update.Latest, s.Update.Available = false, "0.3.0", true
			s.Update.CheckError, s.Update.CheckedAt = "fetch http://100.96.0.1:80/releases/manifest.json: not found", now.Add(-time.Hour)
			s.Update.LastResult = &localapi.UpdateResult{From: "0.1.0", To: "0.3.0", Reason: "0.3.0 failed: the tunnel was not up within 2m0s; rolled back to 0.1.0", Time: now}
		}, []string{
			"updates:         only when asked (auto = false); 0.3.0 is available (hubtunnel update install)",
			"update check:    failed at 2026-12-01 15:08: fetch http://100.96.0.1:80/releases/manifest.json: not found",
			"last update:     0.1.0 to 0.3.0 failed at 2026-12-01 16:08: 0.3.0 failed: the tunnel was not up within 2m0s; rolled back to 0.1.0",
		}, nil},
		{"installing", func(s *localapi.Status) {
			s.Update.Installing, s.Update.Available, s.Update.Latest = "0.2.0", true, "0.2.0"
		}, []string{"updates:         automatic, between 03:00 and 05:00; installing 0.2.0 now"}, nil},
		{"no updater", func(s *localapi.Status) { s.Update = nil }, nil, []string{"updates:"}},
	} {
		st := connected()
		c.change(&st)
		var b strings.Builder
		writeStatus(&b, st, now)
		lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
		have := map[string]bool{}
		for _, l := range lines {
			have[l] = true
		}
		for _, w := range c.want {
			if !have[w] {
				t.Errorf("%s: no line %q in:\n%s", c.name, w, b.String())
			}
		}
		for _, a := range c.absent {
			for _, l := range lines {
				if strings.HasPrefix(l, a) {
					t.Errorf("%s: line %q should not be there", c.name, l)
				}
			}
		}
	}
}
