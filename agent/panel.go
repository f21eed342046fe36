package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/hubtunnel/hubtunnel/config"
	"github.com/hubtunnel/hubtunnel/dnsfix"
	"github.com/hubtunnel/hubtunnel/internal/atomicfile"
	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/panel"
	"github.com/hubtunnel/hubtunnel/portmap"
	"github.com/hubtunnel/hubtunnel/uplink"
)

// The agent's side of the settings panel (package panel): what the panel
// shows of the agent and how its changes reach the config file. A change
// is a transaction: the new file is the old one's keys with the panel's
// settings in place, validated as the agent validates at start; only a
// valid one replaces the old (atomically), and a restart (the agent's
// re-exec) applies it.

var _ panel.Agent = (*Agent)(nil)

// panelHandler is the panel on the agent's ui_listen.
func (a *Agent) panelHandler() http.Handler {
	return panel.Handler(a, panel.Config{
		Rega:         a.cfg.Panel.Rega,
		LanguageFile: a.cfg.Panel.LanguageFile,
		Logf:         a.logf,
		Stats:        a.statsHandler(),
	})
}

// Settings is what the panel shows of the config (panel.Agent).
func (a *Agent) Settings() panel.Settings {
	c := a.cfg
	s := panel.Settings{
		Enabled:      c.IsEnabled(),
		AutoUpdate:   c.Update.IsAuto(),
		UpdateWindow: c.Update.Window,
		Proxy:        c.Proxy,
		AllowedCIDRs: slices.Clone(c.AllowedCIDRs),
		DNSFallback:  slices.Clone(c.DNS.Fallback),
	}
	if c.DNS.Fallback == nil {
		for _, f := range dnsfix.DefaultFallback {
			s.DNSFallback = append(s.DNSFallback, strings.TrimSuffix(f, ":53"))
		}
	}
	s.OptionalPorts = []uint16{}
	for _, p := range c.Targets.Enable {
		if e, ok := portmap.Lookup(p); ok && e.Optional && !slices.Contains(s.OptionalPorts, p) {
			s.OptionalPorts = append(s.OptionalPorts, p)
		}
	}
	slices.Sort(s.OptionalPorts)
	return s
}

// panelFields maps the config keys the panel manages to its fields.
var panelFields = map[string]string{
	"enabled":        "enabled",
	"update.auto":    "auto_update",
	"update.window":  "update_window",
	"proxy":          "proxy",
	"allowed_cidrs":  "allowed_cidrs",
	"dns.fallback":   "dns_fallback",
	"targets.enable": "optional_ports",
}

// SaveSettings writes s to the config file and restarts the agent to
// apply it (panel.Agent). Keys the panel does not manage stay as they
// are (comments and the order of keys do not survive).
func (a *Agent) SaveSettings(s panel.Settings) (bool, error) {
	a.panelMu.Lock()
	defer a.panelMu.Unlock()
	path := a.cfg.path
	if path == "" {
		return false, errors.New("settings need the agent to run from a config file")
	}
	cur := a.Settings()
	old, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	m := map[string]any{}
	if _, err := toml.Decode(string(old), &m); err != nil {
		return false, fmt.Errorf("%s cannot be read (%v); correct it by hand", path, err)
	}
	var changed []string
	table := func(name string) map[string]any {
		t, ok := m[name].(map[string]any)
		if !ok {
			t = map[string]any{}
			m[name] = t
		}
		return t
	}
	if s.Enabled != cur.Enabled {
		m["enabled"] = s.Enabled
		changed = append(changed, "enabled")
	}
	if s.AutoUpdate != cur.AutoUpdate {
		table("update")["auto"] = s.AutoUpdate
		changed = append(changed, "update.auto")
	}
	if s.UpdateWindow != cur.UpdateWindow {
		table("update")["window"] = s.UpdateWindow
		changed = append(changed, "update.window")
	}
	if s.Proxy != cur.Proxy {
		if s.Proxy == "" {
			delete(m, "proxy")
		} else {
			m["proxy"] = s.Proxy
		}
		changed = append(changed, "proxy")
	}
	if !slices.Equal(s.AllowedCIDRs, cur.AllowedCIDRs) {
		if len(s.AllowedCIDRs) == 0 {
			return false, &panel.FieldError{Field: "allowed_cidrs", Problem: fmt.Sprintf("enter at least one address or range; %s is the relay's, the usual one", a.cfg.RelayTunnelIP)}
		}
		m["allowed_cidrs"] = s.AllowedCIDRs
		changed = append(changed, "allowed_cidrs")
	}
	if !slices.Equal(s.DNSFallback, cur.DNSFallback) {
		table("dns")["fallback"] = nonNil(s.DNSFallback)
		changed = append(changed, "dns.fallback")
	}
	want := slices.Clone(s.OptionalPorts)
	slices.Sort(want)
	want = slices.Compact(want)
	if !slices.Equal(want, cur.OptionalPorts) {
		enable := []uint16{}
		for _, p := range a.cfg.Targets.Enable { // what is not optional stays
			if e, ok := portmap.Lookup(p); !ok || !e.Optional {
				enable = append(enable, p)
			}
		}
		for _, p := range want {
			if e, ok := portmap.Lookup(p); !ok || !e.Optional {
				return false, &panel.FieldError{Field: "optional_ports", Problem: fmt.Sprintf("%d is not one of the optional ports 90, 8001, 8002", p)}
			}
			enable = append(enable, p)
		}
		ints := make([]int64, len(enable))
		for i, p := range enable {
			ints[i] = int64(p)
		}
		table("targets")["enable"] = ints
		changed = append(changed, "targets.enable")
	}
	if len(changed) == 0 {
		return false, nil
	}
	for _, t := range []string{"update", "dns", "targets"} {
		if tt, ok := m[t].(map[string]any); ok && len(tt) == 0 {
			delete(m, t)
		}
	}
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(m); err != nil {
		return false, fmt.Errorf("writing the settings: %w", err)
	}
	trial := &Config{path: path, dir: a.cfg.dir, root: a.cfg.root}
	if err := config.Parse(path, b.Bytes(), trial); err != nil {
		var ke *config.KeyError
		if errors.As(err, &ke) {
			if f, ok := panelFields[ke.Key]; ok {
				return false, &panel.FieldError{Field: f, Problem: ke.Err.Error()}
			}
		}
		return false, fmt.Errorf("not saved: %v", err)
	}
	mode := os.FileMode(0o600)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	if err := atomicfile.WriteFile(path, b.Bytes(), mode); err != nil {
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	a.logf("agent: the panel changed %s; restarting to apply", strings.Join(changed, ", "))
	a.requestRestartFor(a.cfg.Update.InstalledBinary(), "agent: restarting with the panel's settings")
	return true, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Restart runs the agent again in place of itself (panel.Agent).
func (a *Agent) Restart() error {
	if a.cfg.path == "" {
		return errors.New("a restart needs the agent to run from a config file")
	}
	a.logf("agent: restart asked for in the panel")
	a.requestRestartFor(a.cfg.Update.InstalledBinary(), "agent: restarting, as asked in the panel")
	return nil
}

// PortMap is the port map as the owner sees it (panel.Agent): each active
// tunnel port, what answers it on the hub, and its address at the relay
// for the ports the relay serves with TLS, from the hub's URL there.
func (a *Agent) PortMap() []panel.Port {
	a.keyMu.Lock()
	hubURL := a.url
	a.keyMu.Unlock()
	host, offset := "", 0
	if u, err := url.Parse(hubURL); err == nil && u.Hostname() != "" {
		host = u.Hostname()
		base := 443
		if u.Scheme == "http" {
			base = 80
		}
		if p, err := strconv.Atoi(u.Port()); err == nil {
			offset = p - base
		}
	}
	var out []panel.Port
	for _, r := range a.cfg.routes {
		p := panel.Port{Port: r.Port, Service: r.Name, Local: r.Target, TLS: r.TLS, Optional: r.Optional}
		if host != "" && r.TLS {
			pub := int(r.Port) + offset
			hp := host
			if pub != 443 {
				hp = net.JoinHostPort(host, strconv.Itoa(pub))
			}
			p.URL = "https://" + hp + "/"
		}
		out = append(out, p)
	}
	return out
}

// DNSTrace resolves the relay's name now (panel.Agent).
func (a *Agent) DNSTrace(ctx context.Context) panel.Finding {
	if !a.cfg.Enrolled() {
		return panel.Finding{Said: localapi.Words{Kind: "unenrolled", Text: "this hub is not connected to a relay yet: there is no name to resolve"}}
	}
	if !a.cfg.relayIsName() {
		return panel.Finding{OK: true, Said: localapi.Words{Kind: "by-address", Detail: a.cfg.relayHost,
			Text: fmt.Sprintf("The relay is given by its address, %s: there is nothing to resolve.", a.cfg.relayHost)}}
	}
	r := a.dns.Load()
	if r == nil {
		var err error
		if r, err = a.cfg.DNSResolver(nil); err != nil {
			return panel.Finding{Said: localapi.WordsOf(err)}
		}
	}
	t, err := r.Resolve(ctx, a.cfg.relayHost)
	if err != nil {
		return panel.Finding{Trace: t.String(), Said: localapi.Words{Kind: "no-address", Detail: t.Name,
			Text: fmt.Sprintf("no usable address for %s", t.Name)}}
	}
	addrs := make([]string, len(t.Order))
	for i, ad := range t.Order {
		addrs[i] = ad.String()
	}
	got := strings.Join(addrs, ", ")
	if t.Server != "" {
		got += " (" + string(t.Source) + " " + t.Server + ")"
	}
	return panel.Finding{OK: true, Trace: t.String(), Said: localapi.Words{Kind: "resolved", Detail: got,
		Text: fmt.Sprintf("%s resolves to %s.", t.Name, got)}}
}

// TestConnection dials the relay now as the tunnel does (panel.Agent).
func (a *Agent) TestConnection(ctx context.Context) panel.Finding {
	c := a.cfg
	if !c.Enrolled() {
		return panel.Finding{Said: localapi.Words{Kind: "unenrolled", Text: "this hub is not connected to a relay yet: enter an enrollment code first"}}
	}
	if c.Transport == "udp" {
		return panel.Finding{OK: true, Said: localapi.Words{Kind: "udp-no-test",
			Text: "The tunnel uses plain WireGuard over UDP: there is no connection to test; the state above shows whether the relay answers (an idle hub pings it every 25 s)."}}
	}
	res := a.dns.Load()
	if res == nil && c.relayIsName() {
		var err error
		if res, err = c.DNSResolver(nil); err != nil {
			return panel.Finding{Said: localapi.WordsOf(err)}
		}
	}
	proxy, err := relayProxy(c, a.logf)
	if err != nil {
		return panel.Finding{Said: localapi.WordsOf(err)}
	}
	began := time.Now()
	conn, route, err := relayDialer(c, res, proxy).DialRelay(ctx)
	if err != nil {
		why := uplink.Explain(err)
		why.Text = fmt.Sprintf("cannot reach the relay at %s: %s", c.Relay, why.Text)
		return panel.Finding{Said: why}
	}
	conn.Close()
	took := fmt.Sprintf("%s, %s, %d ms", c.Relay, route, time.Since(began).Milliseconds())
	return panel.Finding{OK: true, Said: localapi.Words{Kind: "reached", Detail: took,
		Text: fmt.Sprintf("Reached the relay at %s over %s in %d ms.", c.Relay, route, time.Since(began).Milliseconds())}}
}

// Logs are the agent's last log lines (panel.Agent).
func (a *Agent) Logs() []string { return a.logs.lines() }

// logLines is how many log lines the agent keeps for the panel.
const logLines = 200

// logRing keeps the last log lines in memory, for the panel. What the
// agent logs never holds a secret (logger), so neither does this.
type logRing struct {
	mu   sync.Mutex
	buf  [logLines]string
	next int
	full bool
}

// maxLogLine bounds one kept line.
const maxLogLine = 1000

// tee returns a Logf that logs to f and keeps the line.
func (r *logRing) tee(f logger.Logf) logger.Logf {
	f = logger.OrDiscard(f)
	return func(format string, args ...any) {
		f(format, args...)
		line := time.Now().Format("2006-01-02 15:04:05 ") + fmt.Sprintf(format, args...)
		if len(line) > maxLogLine {
			line = line[:maxLogLine] + "…"
		}
		r.mu.Lock()
		r.buf[r.next] = line
		r.next = (r.next + 1) % logLines
		r.full = r.full || r.next == 0
		r.mu.Unlock()
	}
}

func (r *logRing) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return slices.Clone(r.buf[:r.next])
	}
	return append(slices.Clone(r.buf[r.next:]), r.buf[:r.next]...)
}
