package relay

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/hubtunnel/hubtunnel/config"
	"github.com/hubtunnel/hubtunnel/enroll"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
)

// Config is hubrelay's TOML file. Every field works at its zero value
// except PrivateKeyFile and Domain; defaults are noted beside each field.
type Config struct {
	// AgentListen is where agents connect over TCP. Default ":7443".
	AgentListen string `toml:"agent_listen"`
	// AgentListenUDP is the UDP port for agents on plain WireGuard
	// (transport = "udp"). Default: the port of AgentListen; "off" disables.
	AgentListenUDP string `toml:"agent_listen_udp"`
	// Domain: hub NAME is reached as NAME.<domain>. Required.
	Domain string `toml:"domain"`
	// PublicHost is the relay's name as users type it, for printed URLs.
	// Default: Domain.
	PublicHost string `toml:"public_host"`
	// PublicListen is the address the public ports bind to. Default "" (all).
	PublicListen string `toml:"public_listen"`
	// PortOffset is added to every public port of the map, so an
	// unprivileged relay serves tunnel port 80 on 80+offset. Default 0.
	PortOffset int `toml:"port_offset"`
	// PrivateKeyFile holds the relay's WireGuard key (mode 0600); created
	// when missing. Required.
	PrivateKeyFile string `toml:"private_key_file"`
	// TunnelIP is the relay's address inside the tunnel. Default 100.96.0.1.
	TunnelIP string `toml:"tunnel_ip"`
	// TLSCertFile and TLSKeyFile serve the TLS ports (443, 4430…). Empty:
	// a self-signed certificate for *.<domain> is made at start (browsers
	// will warn; fine for a demo, not for users).
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
	// PlaintextPorts serves the public ports without TLS: the XML-RPC
	// ports 2000, 2001, 2002 and 2010, the script engine's 8181, and the
	// WebUI on 80 (which otherwise redirects to HTTPS). Whatever crosses
	// them, passwords and session cookies included, crosses the internet
	// in clear, so only switch it on for a relay on a trusted network or
	// behind a TLS-terminating proxy. Default false.
	PlaintextPorts bool `toml:"plaintext_ports"`
	// LimitConnsPerAddress is how many connections one source address (an
	// IPv6 /64) may hold open on the public ports; more get a 503.
	// Default 64.
	LimitConnsPerAddress int `toml:"limit_conns_per_address"`
	// LimitRequestsPerSecond is the request rate one source address (an
	// IPv6 /64) may keep up on the public ports, with bursts of ten
	// seconds' worth; more get a 429. Default 20.
	LimitRequestsPerSecond float64 `toml:"limit_requests_per_second"`
	// DebugListen serves the relay's goroutine and connection counts as
	// JSON on GET /debug/state, for tests and the operator on the relay's
	// own machine; loopback addresses only. Default "" (off).
	DebugListen string `toml:"debug_listen"`
	// ReleasesDir is a folder of agent releases (as `make release` writes
	// it) that hubs fetch through the tunnel from
	// http://<tunnel_ip>/releases/. Default: none.
	ReleasesDir string `toml:"releases_dir"`
	// SessionTTL is how long a login lasts, e.g. "12h". Default 12h,
	// at least 1m, at most 720h.
	SessionTTL string `toml:"session_ttl"`
	// Store is the relay's database of accounts, hubs, grants, tokens,
	// sessions and audit records: a SQLite file (created with mode 0600),
	// or a postgres:// URL for relays that share one. Default: relay.db
	// beside the config file (beside private_key_file for a config made
	// in code).
	Store string `toml:"store"`
	// EnrollAddress is the relay's agent port as hubs reach it, written
	// into every enrollment code: "host" (port 7443) or "host:port".
	// Default: public_host with agent_listen's port (the port picked at
	// start when agent_listen's is 0).
	EnrollAddress string `toml:"enroll_address"`
	// EnrollTTL is how long a new enrollment code is valid, e.g. "24h".
	// Default 24h, at least 1m, at most 720h.
	EnrollTTL string `toml:"enroll_ttl"`
	// Hubs are the hubs this relay serves.
	Hubs []HubConfig `toml:"hub"`

	// Now is the relay's clock for its decisions in time: a hub's
	// reconnect window and a UDP hub's freshness. Not in the file; tests
	// set it to move time. Default time.Now.
	Now func() time.Time `toml:"-"`

	tunnelIP   netip.Addr
	sessionTTL time.Duration
	enrollTTL  time.Duration
	dir        string
}

// defaultEnrollTTL is how long an enrollment code is valid by default.
const defaultEnrollTTL = 24 * time.Hour

// LoadConfig reads and validates hubrelay's config file. Relative paths in
// it are relative to the file's folder.
func LoadConfig(path string) (*Config, error) {
	c := &Config{dir: filepath.Dir(path)}
	if err := config.Load(path, c); err != nil {
		return nil, err
	}
	return c, nil
}

// HubConfig is one [[hub]] entry.
type HubConfig struct {
	Name      string `toml:"name"`       // DNS label: lower-case letters, digits, '-'
	PublicKey string `toml:"public_key"` // the agent's WireGuard public key (hubtunnel pubkey)
	TunnelIP  string `toml:"tunnel_ip"`  // the hub's address inside the tunnel, unique
	// Owner is the account that owns the hub, set in the store at every
	// start. Default "": the store's owner stays (hubrelay hub owner).
	Owner string `toml:"owner"`

	key vpn.PublicKey
	ip  netip.Addr
}

// CheckHubName reports whether name can be a hub's name: one DNS label of
// lower-case letters, digits and '-'.
func CheckHubName(name string) error { return store.CheckHubName(name) }

// Validate fills in defaults and checks every value.
func (c *Config) Validate() error {
	if c.AgentListen == "" {
		c.AgentListen = ":7443"
	}
	_, port, err := net.SplitHostPort(c.AgentListen)
	if err != nil {
		return config.Errorf("agent_listen", "%q: want host:port or :port", c.AgentListen)
	}
	if c.AgentListenUDP == "" {
		c.AgentListenUDP = ":" + port
	}
	if c.AgentListenUDP != "off" {
		if _, _, err := net.SplitHostPort(c.AgentListenUDP); err != nil {
			return config.Errorf("agent_listen_udp", "%q: want host:port, :port or \"off\"", c.AgentListenUDP)
		}
	}
	if err := checkDebugListen(c.DebugListen); err != nil {
		return config.Errorf("debug_listen", "%v", err)
	}
	if c.Domain == "" {
		return config.Errorf("domain", "missing: hubs are reached as NAME.<domain>")
	}
	if c.PublicHost == "" {
		c.PublicHost = c.Domain
	}
	if c.PortOffset < 0 || c.PortOffset+44381 > 65535 {
		return config.Errorf("port_offset", "%d: every public port plus the offset must stay below 65536", c.PortOffset)
	}
	if c.PrivateKeyFile == "" {
		return config.Errorf("private_key_file", "missing")
	}
	for _, p := range []*string{&c.PrivateKeyFile, &c.TLSCertFile, &c.TLSKeyFile, &c.ReleasesDir} {
		if *p != "" && !filepath.IsAbs(*p) && c.dir != "" {
			*p = filepath.Join(c.dir, *p)
		}
	}
	if c.TunnelIP == "" {
		c.TunnelIP = "100.96.0.1"
	}
	if c.tunnelIP, err = netip.ParseAddr(c.TunnelIP); err != nil {
		return config.Errorf("tunnel_ip", "%q is not an IP address", c.TunnelIP)
	}
	if c.ReleasesDir != "" {
		if fi, err := os.Stat(c.ReleasesDir); err != nil || !fi.IsDir() {
			return config.Errorf("releases_dir", "%q is not a folder", c.ReleasesDir)
		}
	}
	if c.LimitConnsPerAddress == 0 {
		c.LimitConnsPerAddress = defaultConnsPerAddress
	}
	if c.LimitConnsPerAddress < 1 {
		return config.Errorf("limit_conns_per_address", "%d: want at least 1", c.LimitConnsPerAddress)
	}
	if c.LimitRequestsPerSecond == 0 {
		c.LimitRequestsPerSecond = defaultRequestsPerSecond
	}
	if c.LimitRequestsPerSecond < 0.1 {
		return config.Errorf("limit_requests_per_second", "%g: want at least 0.1", c.LimitRequestsPerSecond)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return config.Errorf("tls_cert_file", "set both tls_cert_file and tls_key_file, or neither")
	}
	if c.sessionTTL, err = config.Duration("session_ttl", c.SessionTTL, 12*time.Hour, time.Minute, 720*time.Hour); err != nil {
		return err
	}
	if c.EnrollAddress == "" && port != "0" { // port 0: set at Start, from the port picked
		c.EnrollAddress = net.JoinHostPort(c.PublicHost, port)
	}
	if _, err := enroll.New(c.EnrollAddress, [enroll.SecretLen]byte{}); c.EnrollAddress != "" && err != nil {
		return config.Errorf("enroll_address", "%q: want host or host:port, as hubs reach the agent port", c.EnrollAddress)
	}
	if c.enrollTTL, err = config.Duration("enroll_ttl", c.EnrollTTL, defaultEnrollTTL, time.Minute, 720*time.Hour); err != nil {
		return err
	}
	c.validateStore()
	names := map[string]bool{}
	keys := map[vpn.PublicKey]string{}
	ips := map[netip.Addr]string{c.tunnelIP: "the relay"}
	for i := range c.Hubs {
		h := &c.Hubs[i]
		at := func(key string) string { return fmt.Sprintf("hub[%d].%s", i, key) }
		if store.CheckHubName(h.Name) != nil {
			return config.Errorf(at("name"), "%q: use lower-case letters, digits and '-'", h.Name)
		}
		if names[h.Name] {
			return config.Errorf(at("name"), "%q is used twice", h.Name)
		}
		names[h.Name] = true
		if h.key, err = vpn.ParsePublicKey(h.PublicKey); err != nil {
			return config.Errorf(at("public_key"), "hub %q: %v", h.Name, err)
		}
		if other, dup := keys[h.key]; dup {
			return config.Errorf(at("public_key"), "hub %q has the same key as hub %q", h.Name, other)
		}
		keys[h.key] = h.Name
		if h.ip, err = netip.ParseAddr(h.TunnelIP); err != nil {
			return config.Errorf(at("tunnel_ip"), "hub %q: %q is not an IP address", h.Name, h.TunnelIP)
		}
		if other, dup := ips[h.ip]; dup {
			return config.Errorf(at("tunnel_ip"), "hub %q: %s is already used by %s", h.Name, h.ip, other)
		}
		ips[h.ip] = "hub " + h.Name
		if h.Owner != "" {
			if err := store.CheckUserName(h.Owner); err != nil {
				return config.Errorf(at("owner"), "hub %q: %v", h.Name, err)
			}
		}
	}
	return nil
}

// validateStore fills in the store's default and makes a relative SQLite
// path relative to the config's folder. The store itself checks the rest
// when the relay opens it.
func (c *Config) validateStore() {
	dir := c.dir
	if dir == "" {
		dir = filepath.Dir(c.PrivateKeyFile)
	}
	switch {
	case c.Store == "":
		c.Store = filepath.Join(dir, "relay.db")
	case !store.IsPostgres(c.Store) && !filepath.IsAbs(c.Store):
		c.Store = filepath.Join(dir, c.Store)
	}
}
