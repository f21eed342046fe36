package relay

import (
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
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
	// LimitPublicConns is how many connections the public ports may hold
	// open together. At the limit, a new connection closes the oldest one
	// that has not sent a complete request head yet or waits idle between
	// requests; with none such it is reset. Default: 40 % of the process's
	// file descriptor limit (ulimit -n) less 256 for the relay's own files.
	LimitPublicConns int `toml:"limit_public_conns"`
	// LimitAgentConns is how many connections the agent port may hold open
	// together, hubs online included. At the limit, a new connection closes
	// the oldest one that has not said Hello or proven its hub yet; with
	// none such it is reset. Default: the other 60 % of the descriptors.
	LimitAgentConns int `toml:"limit_agent_conns"`
	// LimitAgentPreHelloPerAddress is how many connections one source
	// address (an IPv6 /64) may hold open on the agent port before they
	// have said Hello; more are reset. Default 16.
	LimitAgentPreHelloPerAddress int `toml:"limit_agent_prehello_per_address"`
	// LimitSessionsPerHub is how many requests (a WebSocket or XML-RPC
	// call for as long as it lasts) may be in flight to one hub through the
	// relay; more get a 503. Default 256.
	LimitSessionsPerHub int `toml:"limit_sessions_per_hub"`
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
	// CertDir keeps the relay's certificates: the self-signed one (made
	// once when there is no tls_cert_file and no [acme]) and the ACME
	// account and certificate. Mode 0700, files 0600. Default: "certs"
	// beside the store (beside the config for a postgres:// store).
	CertDir string `toml:"cert_dir"`
	// ACME gets the TLS ports' certificate from an ACME CA (Let's
	// Encrypt) over DNS-01. Default: off.
	ACME *ACMEConfig `toml:"acme"`
	// MetricsListen serves Prometheus metrics (/metrics) and health
	// (/healthz, /readyz) on its own listener, e.g. "127.0.0.1:9310".
	// Default "": off. Only loopback and private addresses, unless
	// MetricsPublic.
	MetricsListen string `toml:"metrics_listen"`
	// MetricsPublic allows a public metrics_listen address. Default false.
	MetricsPublic bool `toml:"metrics_public"`
	// ReadyCertDays: /readyz fails when the certificate served ends within
	// this many days. Default 7.
	ReadyCertDays int `toml:"ready_cert_days"`
	// Hubs are the hubs this relay serves.
	Hubs []HubConfig `toml:"hub"`

	// Now is the relay's clock for its decisions in time: a hub's
	// reconnect window and a UDP hub's freshness. Not in the file; tests
	// set it to move time. Default time.Now.
	Now func() time.Time `toml:"-"`
	// Logger gets the relay's lines (field names: internal/logger).
	// Default: text lines to New's logf.
	Logger *slog.Logger `toml:"-"`

	tunnelIP   netip.Addr
	sessionTTL time.Duration
	enrollTTL  time.Duration
	dir        string
	path       string // the file LoadConfig read, for Reload
}

// ACMEConfig is the [acme] table: a wildcard certificate over DNS-01.
type ACMEConfig struct {
	// CA is the ACME directory URL. Default: Let's Encrypt's production.
	CA string `toml:"ca"`
	// Email is the account's contact for the CA's expiry notices. Optional.
	Email string `toml:"email"`
	// CARoot is a PEM file of roots the CA's HTTPS is checked with, for a
	// private CA. Default: the system's roots.
	CARoot string `toml:"ca_root"`
	// RenewBefore is how long before its end the certificate is renewed
	// (at most half its life). Default 720h (30 days).
	RenewBefore string `toml:"renew_before"`
	// RFC2136 is the DNS server the challenge records are set on.
	RFC2136 RFC2136Config `toml:"rfc2136"`

	renewBefore time.Duration
	caRoots     *x509.CertPool
}

// RFC2136Config is [acme.rfc2136]: the primary DNS server of the domain's
// zone, which takes dynamic updates (RFC 2136) signed with a TSIG key.
type RFC2136Config struct {
	// Server is the DNS server, "host" (port 53) or "host:port". Required.
	Server string `toml:"server"`
	// Zone is the zone the records go into. Default: found by asking
	// Server for the SOA of the domain.
	Zone string `toml:"zone"`
	// TSIGKey is the key's name, as in the server's config.
	TSIGKey string `toml:"tsig_key"`
	// TSIGSecretFile holds the key's base64 secret, alone or as the
	// `key "…" { secret "…"; };` block tsig-keygen prints. A secret:
	// keep the file 0600; it is never logged.
	TSIGSecretFile string `toml:"tsig_secret_file"`
	// TSIGAlgorithm: hmac-sha256 (default), hmac-sha1, hmac-sha224,
	// hmac-sha384 or hmac-sha512.
	TSIGAlgorithm string `toml:"tsig_algorithm"`

	tsigSecret string
}

func (r *RFC2136Config) zones() []string {
	if r.Zone == "" {
		return nil
	}
	return []string{r.Zone}
}

// defaultEnrollTTL is how long an enrollment code is valid by default.
const defaultEnrollTTL = 24 * time.Hour

// LoadConfig reads and validates hubrelay's config file. Relative paths in
// it are relative to the file's folder.
func LoadConfig(path string) (*Config, error) {
	c := &Config{dir: filepath.Dir(path), path: path}
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
	for _, l := range []struct {
		key string
		v   int
	}{
		{"limit_public_conns", c.LimitPublicConns},
		{"limit_agent_conns", c.LimitAgentConns},
		{"limit_agent_prehello_per_address", c.LimitAgentPreHelloPerAddress},
		{"limit_sessions_per_hub", c.LimitSessionsPerHub},
	} {
		if l.v < 0 {
			return config.Errorf(l.key, "%d: want at least 1 (or leave it out for the default)", l.v)
		}
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
	if err := c.validateCerts(); err != nil {
		return err
	}
	if err := c.validateMetrics(); err != nil {
		return err
	}
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

// connLimits are the connection limits with their defaults filled in:
// overall on the public ports and the agent port, connections before Hello
// per address on the agent port, and sessions per hub.
func (c *Config) connLimits() (public, agent, preHelloPerAddress, sessionsPerHub int) {
	public, agent = defaultConnLimits(fdLimit())
	if c.LimitPublicConns > 0 {
		public = c.LimitPublicConns
	}
	if c.LimitAgentConns > 0 {
		agent = c.LimitAgentConns
	}
	preHelloPerAddress, sessionsPerHub = defaultPreHelloPerAddress, defaultSessionsPerHub
	if c.LimitAgentPreHelloPerAddress > 0 {
		preHelloPerAddress = c.LimitAgentPreHelloPerAddress
	}
	if c.LimitSessionsPerHub > 0 {
		sessionsPerHub = c.LimitSessionsPerHub
	}
	return public, agent, preHelloPerAddress, sessionsPerHub
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

// letsEncrypt is the default ACME CA.
const letsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// validateCerts checks cert_dir and [acme].
func (c *Config) validateCerts() error {
	switch {
	case c.CertDir == "" && store.IsPostgres(c.Store):
		c.CertDir = filepath.Join(c.dir, "certs")
	case c.CertDir == "":
		c.CertDir = filepath.Join(filepath.Dir(c.Store), "certs")
	case !filepath.IsAbs(c.CertDir) && c.dir != "":
		c.CertDir = filepath.Join(c.dir, c.CertDir)
	}
	a := c.ACME
	if a == nil {
		return nil
	}
	if c.TLSCertFile != "" {
		return config.Errorf("acme", "set either [acme] or tls_cert_file, not both")
	}
	if a.CA == "" {
		a.CA = letsEncrypt
	}
	if u, err := url.Parse(a.CA); err != nil || u.Scheme != "https" || u.Host == "" {
		return config.Errorf("acme.ca", "%q: want the CA's directory URL, https://…", a.CA)
	}
	if a.Email != "" && !strings.Contains(a.Email, "@") {
		return config.Errorf("acme.email", "%q is not an email address", a.Email)
	}
	var err error
	if a.renewBefore, err = config.Duration("acme.renew_before", a.RenewBefore, 30*24*time.Hour, time.Second, 365*24*time.Hour); err != nil {
		return err
	}
	if a.CARoot != "" {
		if !filepath.IsAbs(a.CARoot) && c.dir != "" {
			a.CARoot = filepath.Join(c.dir, a.CARoot)
		}
		pemData, err := os.ReadFile(a.CARoot)
		if err != nil {
			return config.Errorf("acme.ca_root", "%v", err)
		}
		a.caRoots = x509.NewCertPool()
		if !a.caRoots.AppendCertsFromPEM(pemData) {
			return config.Errorf("acme.ca_root", "%s holds no PEM certificate", a.CARoot)
		}
	}
	r := &a.RFC2136
	if r.Server == "" {
		return config.Errorf("acme.rfc2136.server", "missing: the DNS server that takes the challenge records (RFC 2136 dynamic updates)")
	}
	if _, _, err := net.SplitHostPort(r.Server); err != nil {
		r.Server = net.JoinHostPort(r.Server, "53")
	}
	if _, port, err := net.SplitHostPort(r.Server); err != nil || port == "" {
		return config.Errorf("acme.rfc2136.server", "%q: want host or host:port", r.Server)
	}
	if (r.TSIGKey == "") != (r.TSIGSecretFile == "") {
		return config.Errorf("acme.rfc2136.tsig_key", "set both tsig_key and tsig_secret_file, or neither")
	}
	if r.TSIGAlgorithm == "" {
		r.TSIGAlgorithm = "hmac-sha256"
	}
	switch strings.TrimSuffix(r.TSIGAlgorithm, ".") {
	case "hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512":
	default:
		return config.Errorf("acme.rfc2136.tsig_algorithm", "%q: want hmac-sha256, hmac-sha1, hmac-sha224, hmac-sha384 or hmac-sha512", r.TSIGAlgorithm)
	}
	if r.TSIGSecretFile != "" {
		if !filepath.IsAbs(r.TSIGSecretFile) && c.dir != "" {
			r.TSIGSecretFile = filepath.Join(c.dir, r.TSIGSecretFile)
		}
		data, err := os.ReadFile(r.TSIGSecretFile)
		if err != nil {
			return config.Errorf("acme.rfc2136.tsig_secret_file", "%v", err)
		}
		if r.tsigSecret, err = parseTSIGSecret(data); err != nil {
			return config.Errorf("acme.rfc2136.tsig_secret_file", "%s: %v", r.TSIGSecretFile, err)
		}
	}
	return nil
}

// parseTSIGSecret reads a TSIG secret: the base64 text alone, or the
// secret "…"; line of a key block as tsig-keygen prints it. Errors never
// quote the file.
func parseTSIGSecret(data []byte) (string, error) {
	text := strings.TrimSpace(string(data))
	if i := strings.Index(text, "secret"); i >= 0 && strings.Contains(text, "{") {
		rest := text[i+len("secret"):]
		start := strings.Index(rest, `"`)
		end := strings.Index(rest[start+1:], `"`)
		if start < 0 || end < 0 {
			return "", fmt.Errorf(`no secret "…"; in the key block`)
		}
		text = rest[start+1 : start+1+end]
	}
	if _, err := base64.StdEncoding.DecodeString(text); err != nil || text == "" {
		return "", fmt.Errorf("the secret is not base64 (want the secret alone or tsig-keygen's key block)")
	}
	return text, nil
}

// validateMetrics checks metrics_listen: an address that is not loopback
// or private is refused unless metrics_public.
func (c *Config) validateMetrics() error {
	if c.ReadyCertDays == 0 {
		c.ReadyCertDays = 7
	}
	if c.ReadyCertDays < 0 {
		return config.Errorf("ready_cert_days", "%d: want 0 or more", c.ReadyCertDays)
	}
	if c.MetricsListen == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(c.MetricsListen)
	if err != nil {
		return config.Errorf("metrics_listen", "%q: want host:port, e.g. 127.0.0.1:9310", c.MetricsListen)
	}
	if c.MetricsPublic {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if host != "localhost" && (err != nil || !(ip.IsLoopback() || ip.IsPrivate())) {
		return config.Errorf("metrics_listen", "%q is or may be a public address: metrics tell how busy the relay is; "+
			"use a loopback or private address (127.0.0.1:9310), or set metrics_public = true", c.MetricsListen)
	}
	return nil
}
