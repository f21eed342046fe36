package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/agent"
	"github.com/hubtunnel/hubtunnel/localapi"
)

const statusUsage = "usage: hubtunnel status [--config FILE] [--json]"

// status runs "hubtunnel status": what the running agent says about the
// tunnel, for a hub owner (or, with --json, the API's answer for scripts).
func status(args []string) error {
	confPath := defaultConfig
	asJSON := false
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case (a == "--config" || a == "-config") && i+1 < len(args):
			confPath = args[i+1]
			i++
		case a == "--json":
			asJSON = true
		default:
			return errors.New(statusUsage)
		}
	}
	cfg, err := agent.LoadConfig(confPath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := localapi.NewClient(cfg.UIListen).Status(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	writeStatus(os.Stdout, st, time.Now())
	return nil
}

// writeStatus prints st for a person: one "label: value" line per fact,
// times in now's location.
func writeStatus(w io.Writer, st localapi.Status, now time.Time) {
	line := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-16s %s\n", label+":", fmt.Sprintf(format, args...))
	}
	fmt.Fprintf(w, "hubtunnel %s: %s\n", st.Version, stateWords(st.State))
	if st.State == localapi.StateUnenrolled {
		line("this hub", "%s", st.Hub)
		writeUpdate(line, st.Update, now)
		return
	}
	if st.Name != "" {
		line("hub name", "%s", st.Name)
	}
	if st.URL != "" {
		line("WebUI", "%s", st.URL)
	}
	if !st.Enrolled.IsZero() {
		line("enrolled", "%s", when(st.Enrolled, now))
	}
	relay := relayWords(st)
	if st.RelaySoftware != "" {
		relay += " (" + st.RelaySoftware + ")"
	}
	line("relay", "%s", relay)
	if st.State == localapi.StateDisabled {
		line("this hub", "%s", st.Hub)
		writeUpdate(line, st.Update, now)
		return
	}
	if st.State != localapi.StateConnected && st.LastError != "" {
		line("why not", "%s", st.LastError)
	}
	if !st.ConnectedSince.IsZero() {
		line("connected since", "%s", when(st.ConnectedSince, now))
	}
	if st.LastHandshake.IsZero() {
		line("last handshake", "never")
	} else {
		line("last handshake", "%s", when(st.LastHandshake, now))
	}
	if st.DNSSource != "" {
		line("relay address", "%s (%s)", strings.Join(st.DNSAnswer, ", "), dnsWords(st.DNSSource))
	}
	line("tunnel address", "%s", st.TunnelIP)
	line("data", "%s received, %s sent since the agent started (%s of tunnel overhead)",
		bytesWords(st.BytesRx), bytesWords(st.BytesTx), bytesWords(st.OverheadBytes))
	line("sessions", "%d open, %d since the agent started", st.SessionsActive, st.SessionsTotal)
	if st.DroppedPackets > 0 {
		line("dropped", "%d packets the hub's tunnel firewall did not let in", st.DroppedPackets)
	}
	if st.TCPRetransmits > 0 {
		waits := "none waited for a retransmission timeout"
		if st.TCPTimeouts > 0 {
			waits = fmt.Sprintf("retransmission timeouts: %d", st.TCPTimeouts)
		}
		line("resent", "%d TCP segments to the relay, lost on the way (%s)", st.TCPRetransmits, waits)
	}
	if f := st.CCUFirewall; f != nil {
		switch f.Source {
		case "lockdown":
			line("CCU firewall", "only the WebUI: %s", f.Error)
		case "defaults":
			line("CCU firewall", "%s is missing: the CCU's factory defaults (no access); %d connections refused", f.File, f.Refused)
		default:
			line("CCU firewall", "%s; %d connections refused", f.Settings, f.Refused)
		}
	}
	line("this hub", "%s", st.Hub)
	writeUpdate(line, st.Update, now)
}

func writeUpdate(line func(label, format string, args ...any), u *localapi.UpdateStatus, now time.Time) {
	if u == nil {
		return
	}
	var parts []string
	if u.Auto {
		parts = append(parts, "automatic, between "+strings.Replace(u.Window, "-", " and ", 1))
	} else {
		parts = append(parts, "only when asked (auto = false)")
	}
	switch {
	case u.Installing != "":
		parts = append(parts, "installing "+u.Installing+" now")
	case u.Available && !u.PlannedInstall.IsZero():
		parts = append(parts, u.Latest+" is available, to be installed "+clock(u.PlannedInstall, now))
	case u.Available:
		parts = append(parts, u.Latest+" is available (hubtunnel update install)")
	case u.Latest != "":
		parts = append(parts, "up to date (newest release "+u.Latest+")")
	}
	line("updates", "%s", strings.Join(parts, "; "))
	if u.CheckError != "" {
		line("update check", "failed %s: %s", clock(u.CheckedAt, now), u.CheckError)
	}
	if r := u.LastResult; r != nil {
		if r.OK {
			line("last update", "%s to %s, %s", r.From, r.To, clock(r.Time, now))
		} else {
			line("last update", "%s to %s failed %s: %s", r.From, r.To, clock(r.Time, now), r.Reason)
		}
	}
}

// relayWords says where and how the agent reaches the relay: the route of
// the current connection, or else what the transport will try.
func relayWords(st localapi.Status) string {
	addr, how := st.Relay, strings.ToUpper(st.Transport)
	switch {
	case st.Route != "":
		first, rest, _ := strings.Cut(st.Route, " ") // "tls via proxy": TLS via proxy
		how = strings.TrimSpace(strings.ToUpper(first) + " " + rest)
		if first == "tls" && st.RelayTLS != "" {
			addr = st.RelayTLS
		}
		if st.Transport == "auto" {
			how += ", found by transport auto"
		}
	case st.Transport == "tls" && st.RelayTLS != "":
		addr = st.RelayTLS
	case st.Transport == "auto":
		addr, how = st.Relay+" or "+st.RelayTLS, "TCP or TLS (transport auto)"
	}
	return addr + " over " + how
}

// stateWords says what a Status.State means for the hub owner.
func stateWords(state string) string {
	switch state {
	case localapi.StateUnenrolled:
		return "not enrolled: enter the code from your relay's portal (hubtunnel enroll CODE, or the addon's settings page)"
	case localapi.StateConnected:
		return "connected: the hub is reachable through the relay"
	case localapi.StateConnecting:
		return "not connected: trying to reach the relay"
	case localapi.StateDisabled:
		return "switched off (enabled = false in the config)"
	}
	return state
}

// dnsWords says where the relay's address came from (Status.DNSSource).
func dnsWords(source string) string {
	switch source {
	case "hosts":
		return "from /etc/hosts"
	case "system":
		return "from the hub's own resolver"
	case "fallback":
		return "from a public resolver: the hub's own gave no good answer"
	case "cache":
		return "the last good answer, kept on disk: no resolver answered"
	}
	return "from " + source
}

// when is a past moment with how long ago it was: "2026-12-01 14:03:05
// (2h 5m ago)".
func when(t, now time.Time) string {
	return t.In(now.Location()).Format("2006-01-02 15:04:05") + " (" + ago(now.Sub(t)) + ")"
}

// clock is a moment to the minute, "at 2026-12-02 03:41".
func clock(t, now time.Time) string {
	return "at " + t.In(now.Location()).Format("2006-01-02 15:04")
}

// ago rounds a duration for people: "45s ago", "5m 3s ago", "2h 5m ago",
// "3d 4h ago".
func ago(d time.Duration) string {
	if d < 0 {
		return "just now"
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds ago", s)
	case s < 3600:
		return fmt.Sprintf("%dm %ds ago", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh %dm ago", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd %dh ago", s/86400, s%86400/3600)
}

// bytesWords is a byte count with a binary unit: "512 B", "1.5 KiB",
// "12.3 MiB".
func bytesWords(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n)/1024, "KiB"
	for _, u := range []string{"MiB", "GiB", "TiB"} {
		if v < 1024 {
			break
		}
		v, unit = v/1024, u
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}
