package agent

import (
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/config"
	"github.com/hubtunnel/hubtunnel/dnsfix"
	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/portmap"
	"github.com/hubtunnel/hubtunnel/selfupdate"
	"github.com/hubtunnel/hubtunnel/uplink"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// Config is the agent's TOML file. Defaults are noted beside each field;
// relative paths are relative to the config file's folder.
type Config struct {
	// Name is the hub's name at the relay (NAME.<domain>), for display.
	// An enrollment sets it (as it does relay, relay_public_key,
	// tunnel_ip and relay_tunnel_ip: enrollment.json, beside this file,
	// overrides them).
	Name string `toml:"name"`
	// Enabled switches the tunnel on. Default true; false keeps only the
	// status API running.
	Enabled *bool `toml:"enabled"`
	// Relay is the relay's agent port, "host:port". Without it (and
	// without relay_public_key and tunnel_ip) and without an enrollment
	// the agent runs "not enrolled": the status API only.
	Relay string `toml:"relay"`
	// RelayPublicKey pins the relay's WireGuard key (base64). Required
	// with relay.
	RelayPublicKey string `toml:"relay_public_key"`
	// PrivateKeyFile holds this hub's key (mode 0600), made on first start.
	// Default "hubtunnel.key".
	PrivateKeyFile string `toml:"private_key_file"`
	// Transport is "tcp" (one outbound TCP connection to relay), "udp"
	// (plain WireGuard, so any WireGuard server can be the other end),
	// "tls" (the same frames as "tcp" inside TLS to relay_tls, for
	// networks that allow only HTTPS), or "auto" (TCP to relay, else TLS to
	// relay_tls, else TLS through the proxy; the way that worked last is
	// tried first). Through proxy when one is set, except "auto"'s first
	// two. Default: "auto" for a hub enrolled with a code, "tcp" when the
	// relay is set here by hand.
	Transport string `toml:"transport"`
	// RelayTLS is the relay's TLS port, "host:port", for transport "tls"
	// and "auto". Default: what the relay said at enrollment, else
	// relay's host at port 443.
	RelayTLS string `toml:"relay_tls"`
	// TunnelIP is this hub's address inside the tunnel. Required with relay.
	TunnelIP string `toml:"tunnel_ip"`
	// RelayTunnelIP is the relay's address inside the tunnel. Default 100.96.0.1.
	RelayTunnelIP string `toml:"relay_tunnel_ip"`
	// AllowedCIDRs are the tunnel sources that may reach the hub's ports.
	// Default: RelayTunnelIP alone.
	AllowedCIDRs []string `toml:"allowed_cidrs"`
	// Proxy is an HTTP proxy for the relay connection, "http://host:port".
	// Default: HTTPS_PROXY from the environment, else none. "none" = direct.
	Proxy string `toml:"proxy"`
	// UIListen is the local status API. Default "127.0.0.1:8099".
	UIListen string `toml:"ui_listen"`
	// MTU of the tunnel. Default 65503 (wire.MaxTunnelMTU) with transport
	// "tcp", "tls" and "auto": the largest WireGuard message a frame
	// carries, so both netstacks and WireGuard handle the fewest packets.
	// A relay before wire.Features (MTU 8000, 8 KiB frames) still works:
	// TCP's MSS keeps each side's segments to the other's MTU. Default 1420
	// with "udp", where the packets cross real links (at most 8000).
	MTU int `toml:"mtu"`
	// PersistentKeepalive in seconds, UDP only (keeps NAT open). Default 25
	// with transport "udp"; not allowed with "tcp", whose TCP keepalive
	// is far cheaper.
	PersistentKeepalive int `toml:"persistent_keepalive"`
	// MaxSessions bounds the tunnel connections to the hub's services in
	// flight at once; a connection beyond it is reset at once, counted in
	// the status (sessions_refused) and logged at most once a second.
	// Default 2000 (DefaultMaxSessions).
	MaxSessions int `toml:"max_sessions"`
	// Targets are where the fixed tunnel ports lead on the hub.
	Targets portmap.Targets `toml:"targets"`
	// DNS is how the relay's name is resolved.
	DNS DNSConfig `toml:"dns"`
	// Update is how the agent updates itself.
	Update selfupdate.Config `toml:"update"`
	// CCU is what the agent takes over from the CCU's own settings.
	CCU CCUConfig `toml:"ccu"`
	// Panel is the settings panel the agent serves on ui_listen.
	Panel PanelConfig `toml:"panel"`
	// Stats is the traffic statistics' data plan.
	Stats StatsConfig `toml:"stats"`

	// Parsed forms, filled by Validate.
	relayHost     string        // Relay's host: a name, or an IP address (then relayIP)
	relayPort     uint16        // Relay's port, 1 to 65535
	relayIP       netip.Addr    // Relay's host as an address (IPv4 not mapped); invalid for a name
	relayKey      vpn.PublicKey // as pinned: relay-keys.json's, when it builds on the configured one
	relayNext     vpn.PublicKey // the relay's announced next key; zero for none
	tunnelIP      netip.Addr
	relayTunnelIP netip.Addr
	allowed       []netip.Prefix
	routes        []portmap.Route
	path          string // the config file; its folder holds the agent's state
	enrolled      bool   // a relay is set (by enrollment.json or the TOML)
	enrollment    *Enrollment
	enrollApplied bool     // enrollment (or its absence) is in place of the TOML's values
	overridden    []string // keys the TOML set that enrollment.json overrides
	transportSet  bool     // the TOML chose the transport
	relayTLSSet   bool     // the TOML set relay_tls
	dir           string
	root          string   // the hub's filesystem root, for the defaults of [ccu]; "" = "/"
	ignored       []string // state files that could not be used, and what was done instead (update.go)
}

// StartErrorFile is where `hubtunnel run --syslog` leaves why it could not
// start, beside its config, for the init script to report (it removes the
// file before each start).
const StartErrorFile = "start-error"

// LoadConfig reads and validates the agent's config file.
func LoadConfig(path string) (*Config, error) {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	c := &Config{path: path, dir: filepath.Dir(path)}
	if err := config.Load(path, c); err != nil {
		return nil, err
	}
	return c, nil
}

// IsEnabled reports whether the tunnel should run.
func (c *Config) IsEnabled() bool { return c.Enabled == nil || *c.Enabled }

// DefaultMaxSessions is Config.MaxSessions's default. The brief wants 200
// concurrent sessions without an error and 1,500 held; measured, a held
// session costs the agent about 28 KiB (two goroutines waiting in reads,
// the netstack's endpoint, 2 × 2 KiB buffers): 1,500 took it from 13 to 56
// MB. 2,000 bounds it near 70 MB, past its heap limit (the GC works
// harder) but far from a hub's RAM; refusing the 1,500 would fail users.
const DefaultMaxSessions = 2000

// Validate fills in defaults and checks every value.
func (c *Config) Validate() error {
	var err error
	if err := c.applyEnrollment(); err != nil {
		return err
	}
	c.enrolled = c.Relay != "" || c.RelayPublicKey != "" || c.TunnelIP != ""
	if c.enrolled {
		if err := c.parseRelay(); err != nil {
			return err
		}
		if c.relayKey, err = vpn.ParsePublicKey(c.RelayPublicKey); err != nil {
			return config.Errorf("relay_public_key", "%v", err)
		}
		c.applyRelayKeys()
		if c.tunnelIP, err = netip.ParseAddr(c.TunnelIP); err != nil {
			return config.Errorf("tunnel_ip", "%q is not an IP address", c.TunnelIP)
		}
	}
	if c.PrivateKeyFile == "" {
		c.PrivateKeyFile = "hubtunnel.key"
	}
	if !filepath.IsAbs(c.PrivateKeyFile) && c.dir != "" {
		c.PrivateKeyFile = filepath.Join(c.dir, c.PrivateKeyFile)
	}
	c.transportSet = c.Transport != "" || c.transportSet
	c.relayTLSSet = c.RelayTLS != "" || c.relayTLSSet
	switch c.Transport {
	case "":
		// An enrolled hub finds its way out by itself (a network that
		// lets only HTTPS out included); a relay set by hand keeps the
		// transport it was set up with.
		c.Transport = "tcp"
		if c.enrollment != nil {
			c.Transport = "auto"
		}
	case "tcp", "udp", "tls", "auto":
	default:
		return config.Errorf("transport", "%q: want \"tcp\", \"udp\", \"tls\" or \"auto\"", c.Transport)
	}
	if err := c.parseRelayTLS(); err != nil {
		return err
	}
	if c.RelayTunnelIP == "" {
		c.RelayTunnelIP = "100.96.0.1"
	}
	if c.relayTunnelIP, err = netip.ParseAddr(c.RelayTunnelIP); err != nil {
		return config.Errorf("relay_tunnel_ip", "%q is not an IP address", c.RelayTunnelIP)
	}
	if c.AllowedCIDRs == nil {
		c.AllowedCIDRs = []string{netip.PrefixFrom(c.relayTunnelIP, c.relayTunnelIP.BitLen()).String()}
	}
	c.allowed = nil
	for _, s := range c.AllowedCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return config.Errorf("allowed_cidrs", "%q is not an address or CIDR", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		c.allowed = append(c.allowed, p.Masked())
	}
	if c.Proxy != "" && c.Proxy != "none" {
		if _, err := uplink.ParseProxy(c.Proxy); err != nil {
			return config.Errorf("proxy", "%v", err)
		}
	}
	if c.UIListen == "" {
		c.UIListen = "127.0.0.1:8099"
	}
	if _, _, err := net.SplitHostPort(c.UIListen); err != nil {
		return config.Errorf("ui_listen", "%q: want host:port", c.UIListen)
	}
	maxMTU := wire.MaxTunnelMTU
	if c.Transport == "udp" {
		maxMTU = vpn.MaxUDPMTU // UDPBind's receive slots are MTU-sized
	}
	if c.MTU == 0 {
		c.MTU = maxMTU
		if c.Transport == "udp" {
			c.MTU = 1420
		}
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.MaxSessions < 1 {
		return config.Errorf("max_sessions", "%d: want at least 1", c.MaxSessions)
	}
	if c.MTU < 1280 || c.MTU > maxMTU {
		return config.Errorf("mtu", "%d: want 1280 to %d", c.MTU, maxMTU)
	}
	switch {
	case c.Transport != "udp" && c.PersistentKeepalive != 0:
		return config.Errorf("persistent_keepalive", "only for transport \"udp\"; TCP keepalives watch the relay connection")
	case c.Transport == "udp" && c.PersistentKeepalive == 0:
		c.PersistentKeepalive = 25
	case c.PersistentKeepalive < 0 || c.PersistentKeepalive > 3600:
		return config.Errorf("persistent_keepalive", "%d: want 0 to 3600 seconds", c.PersistentKeepalive)
	}
	if err := c.Stats.validate(); err != nil {
		return err
	}
	if err := c.DNS.validate(c.dir); err != nil {
		return err
	}
	if err := c.Update.Validate(c.relayTunnelIP); err != nil {
		return err
	}
	if c.routes, err = c.Targets.Routes(); err != nil {
		return err // names its keys as *config.KeyError
	}
	root := c.root
	if root == "" {
		root = "/"
	}
	if err := c.Panel.validate(root); err != nil {
		return err
	}
	return c.CCU.validate(root)
}

// PanelConfig is the [panel] table: what the settings panel (package
// panel) asks of the CCU.
type PanelConfig struct {
	// Rega is the CCU's script engine, which checks the WebUI session
	// the panel is opened with. Default: ReGaHss's own HTTP port on
	// loopback as /etc/rega_http.port names it (RaspberryMatic: 8183,
	// which its lighttpd serves as 8181, with the API authentication the
	// owner may switch on there), else "http://127.0.0.1:8181".
	Rega string `toml:"rega"`
	// LanguageFile holds the language the CCU's WebUI is set to ("de" or
	// "en"), which the panel follows; without it, the browser's.
	// Default "/etc/config/systemLanguage".
	LanguageFile string `toml:"language_file"`
}

func (p *PanelConfig) validate(root string) error {
	if p.Rega == "" {
		p.Rega = "http://127.0.0.1:8181"
		if b, err := os.ReadFile(filepath.Join(root, "etc/rega_http.port")); err == nil {
			if port, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 16); err == nil && port > 0 {
				p.Rega = "http://127.0.0.1:" + strconv.FormatUint(port, 10)
			}
		}
	}
	u, err := url.Parse(p.Rega)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return config.Errorf("panel.rega", "%q: want the script engine's address, e.g. http://127.0.0.1:8181", p.Rega)
	}
	if p.LanguageFile == "" {
		p.LanguageFile = filepath.Join(root, "etc/config/systemLanguage")
	}
	return nil
}

// parseRelay splits Relay into relayHost, relayPort and relayIP, once: every
// user of the relay's address reads those.
func (c *Config) parseRelay() error {
	if c.Relay == "" {
		return config.Errorf("relay", "missing: the relay's agent address, host:port (or remove relay_public_key and tunnel_ip and enroll the hub with a code)")
	}
	host, port, err := net.SplitHostPort(c.Relay)
	if err != nil || host == "" {
		return config.Errorf("relay", "%q: want host:port", c.Relay)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return config.Errorf("relay", "%q: want a port from 1 to 65535", c.Relay)
	}
	c.relayHost, c.relayPort, c.relayIP = host, uint16(p), netip.Addr{}
	if ip, err := netip.ParseAddr(host); err == nil {
		c.relayIP = ip.Unmap()
	}
	return nil
}

// parseRelayTLS checks relay_tls, and fills in its default, for the
// transports that use it.
func (c *Config) parseRelayTLS() error {
	if c.Transport != "tls" && c.Transport != "auto" {
		if c.RelayTLS != "" {
			return config.Errorf("relay_tls", "only for transport \"tls\" or \"auto\"")
		}
		return nil
	}
	if c.RelayTLS == "" {
		c.RelayTLS = net.JoinHostPort(c.relayHost, "443")
		if c.enrollment != nil && c.enrollment.RelayTLS != "" {
			c.RelayTLS = c.enrollment.RelayTLS
		}
		return nil
	}
	host, port, err := net.SplitHostPort(c.RelayTLS)
	if err != nil || host == "" {
		return config.Errorf("relay_tls", "%q: want host:port, e.g. relay.example.com:443", c.RelayTLS)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return config.Errorf("relay_tls", "%q: want a port from 1 to 65535", c.RelayTLS)
	}
	return nil
}

// relayIsName reports whether the relay is given by name, which dnsfix
// resolves, rather than by IP address.
func (c *Config) relayIsName() bool { return !c.relayIP.IsValid() }

// RelayHost is the relay's host name or address, without the port.
func (c *Config) RelayHost() string { return c.relayHost }

// DNSConfig is the [dns] table: how the relay's name is resolved (package
// dnsfix). A relay given as an IP address skips all of it. Local names
// (fritz.box, .local, .lan, ...) are never sent to a fallback resolver,
// whatever is set here.
type DNSConfig struct {
	// Fallback are public resolvers, "ip" or "ip:port", asked when the
	// hub's own give no good answer. Default 8.8.8.8, 8.8.4.4, 1.1.1.1;
	// [] asks none.
	Fallback []string `toml:"fallback"`
	// System replaces the hub's resolvers from /etc/resolv.conf ("ip" or
	// "ip:port"). Default: those of resolv.conf.
	System []string `toml:"system"`
	// CacheFile keeps the last good answer for starts during a DNS outage.
	// Default "dns-cache.json"; written only when the answer changes.
	CacheFile string `toml:"cache_file"`
	// Timeout bounds one query to one resolver, e.g. "2s". Default "2s".
	Timeout string `toml:"timeout"`

	timeout time.Duration
}

func (d *DNSConfig) validate(dir string) error {
	for _, s := range d.Fallback {
		if _, err := dnsfix.ParseServer(s); err != nil {
			return config.Errorf("dns.fallback", "%v", err)
		}
	}
	for _, s := range d.System {
		if _, err := dnsfix.ParseServer(s); err != nil {
			return config.Errorf("dns.system", "%v", err)
		}
	}
	if d.CacheFile == "" {
		d.CacheFile = "dns-cache.json"
	}
	if !filepath.IsAbs(d.CacheFile) && dir != "" {
		d.CacheFile = filepath.Join(dir, d.CacheFile)
	}
	var err error
	d.timeout, err = config.Duration("dns.timeout", d.Timeout, dnsfix.DefaultTimeout, 100*time.Millisecond, 30*time.Second)
	return err
}

// DNSResolver returns the resolver for the relay's name that [dns] describes.
func (c *Config) DNSResolver(logf logger.Logf) (*dnsfix.Resolver, error) {
	return dnsfix.New(dnsfix.Config{
		System:    c.DNS.System,
		Fallback:  c.DNS.Fallback,
		CacheFile: c.DNS.CacheFile,
		Timeout:   c.DNS.timeout,
		Logf:      logf,
	})
}
