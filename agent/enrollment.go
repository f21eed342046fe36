package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/dnsfix"
	"github.com/hubtunnel/hubtunnel/enroll"
	"github.com/hubtunnel/hubtunnel/internal/atomicfile"
	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/uplink"
	"github.com/hubtunnel/hubtunnel/vpn"
)

// A hub joins a relay with one code (package enroll): the agent makes its
// key if it has none, runs the exchange on a connection of its own to the
// relay's agent port (dialed as the tunnel's is: proxy, dnsfix), and keeps
// what the relay answered in enrollment.json beside its config. That file,
// when present, provides the relay, its key and the tunnel addresses; the
// TOML file keeps everything else. Nothing is written unless the whole
// exchange succeeded and the result makes a valid config.

// EnrollmentFile is the enrollment's file name in the agent's state folder.
const EnrollmentFile = "enrollment.json"

// Enrollment is what the relay told this hub when it enrolled.
type Enrollment struct {
	Relay          string    `json:"relay"`            // the relay's agent address, host:port
	RelayPublicKey string    `json:"relay_public_key"` // pinned, proven by the exchange
	RelayTLS       string    `json:"relay_tls,omitempty"`
	Hub            string    `json:"hub"` // the hub's name at the relay
	TunnelIP       string    `json:"tunnel_ip"`
	RelayTunnelIP  string    `json:"relay_tunnel_ip,omitempty"`
	URL            string    `json:"url,omitempty"` // the hub's WebUI through the relay
	Enrolled       time.Time `json:"enrolled"`
}

// maxEnrollmentFile bounds what is read of enrollment.json.
const maxEnrollmentFile = 16 << 10

// loadEnrollment reads an enrollment file; nil without error when there is
// none.
func loadEnrollment(path string) (*Enrollment, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var e Enrollment
	dec := json.NewDecoder(io.LimitReader(f, maxEnrollmentFile))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v): enroll again with a new code, or remove it", path, err)
	}
	if err := e.check(); err != nil {
		return nil, fmt.Errorf("%s: %v: enroll again with a new code, or remove it", path, err)
	}
	return &e, nil
}

// check checks what an enrollment must hold; Validate checks the rest as
// it does the TOML's values.
func (e *Enrollment) check() error {
	switch {
	case e.Relay == "":
		return errors.New("no relay")
	case e.RelayPublicKey == "":
		return errors.New("no relay_public_key")
	case e.TunnelIP == "":
		return errors.New("no tunnel_ip")
	case e.Hub == "" || len(e.Hub) > 253 || strings.ContainsFunc(e.Hub, func(r rune) bool { return r <= ' ' || r > '~' }):
		return fmt.Errorf("hub name %q is not a name", e.Hub)
	}
	if e.URL != "" {
		if u, err := url.Parse(e.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("url %q is not a web address", e.URL)
		}
	}
	if e.RelayTLS != "" {
		if _, _, err := net.SplitHostPort(e.RelayTLS); err != nil {
			return fmt.Errorf("relay_tls %q: want host:port", e.RelayTLS)
		}
	}
	return nil
}

// save writes the enrollment atomically, mode 0600.
func (e *Enrollment) save(path string) error {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o600)
}

// applyEnrollment puts the enrollment's values in place of the TOML's
// (reading enrollment.json from the state folder the first time), and
// notes which keys the TOML set otherwise. Validate calls it first.
func (c *Config) applyEnrollment() error {
	if c.enrollApplied {
		return nil
	}
	if c.enrollment == nil && c.dir != "" {
		e, err := loadEnrollment(c.EnrollmentPath())
		if err != nil {
			// Not a reason to stay down: the agent runs unenrolled, its
			// status and panel up, and a new code replaces the file.
			c.ignored = append(c.ignored, fmt.Sprintf("%v; running as not enrolled until then", err))
			e = nil
		}
		c.enrollment = e
	}
	c.enrollApplied = true
	e := c.enrollment
	if e == nil {
		return nil
	}
	relayTunnelIP := e.RelayTunnelIP
	if relayTunnelIP == "" {
		relayTunnelIP = c.RelayTunnelIP // the TOML's, or the default
	}
	for _, kv := range []struct {
		key      string
		field    *string
		enrolled string
	}{
		{"name", &c.Name, e.Hub},
		{"relay", &c.Relay, e.Relay},
		{"relay_public_key", &c.RelayPublicKey, e.RelayPublicKey},
		{"tunnel_ip", &c.TunnelIP, e.TunnelIP},
		{"relay_tunnel_ip", &c.RelayTunnelIP, relayTunnelIP},
	} {
		if *kv.field != "" && *kv.field != kv.enrolled {
			c.overridden = append(c.overridden, kv.key)
		}
		*kv.field = kv.enrolled
	}
	return nil
}

// EnrollmentPath is the enrollment's file: EnrollmentFile in the config's
// folder; "" for a config not read from a file.
func (c *Config) EnrollmentPath() string {
	if c.dir == "" {
		return ""
	}
	return filepath.Join(c.dir, EnrollmentFile)
}

// Enrolled reports whether the config names a relay to connect to, from
// enrollment.json or the TOML file.
func (c *Config) Enrolled() bool { return c.enrolled }

// Enrollment is the enrollment the config uses; nil when the relay is set
// in the TOML file or the hub is not enrolled.
func (c *Config) Enrollment() *Enrollment { return c.enrollment }

// Enroll enrolls this hub with code at the relay the code names: it makes
// the hub's key if there is none (kept once enrolled), runs the exchange over a connection
// dialed as the tunnel's is (the proxy of the config or HTTPS_PROXY, the
// relay's name through dnsfix), and writes enrollment.json. On any error
// enrollment.json and the config stay as they were. software is what the
// relay records of the agent. Its errors are written for a hub owner.
func Enroll(ctx context.Context, cfg *Config, code enroll.Code, software string, logf logger.Logf) (*Enrollment, error) {
	logf = logger.OrDiscard(logf)
	path := cfg.EnrollmentPath()
	if path == "" {
		return nil, errors.New("enrolling needs the agent to run from a config file")
	}
	// A new key is kept only once the hub has enrolled with it; the
	// folders it and the enrollment go to must take files before the code
	// is spent.
	k, err := vpn.LoadPrivateKey(cfg.PrivateKeyFile)
	created := errors.Is(err, os.ErrNotExist)
	if created {
		k, err = vpn.GeneratePrivateKey()
	}
	if err != nil {
		return nil, fmt.Errorf("this hub's key: %w", err)
	}
	for _, p := range []string{path, cfg.PrivateKeyFile} {
		f, err := atomicfile.Create(p, 0o600)
		if err != nil {
			return nil, fmt.Errorf("cannot write %s (%w); nothing was changed on this hub", filepath.Dir(p), err)
		}
		f.Abort()
	}
	c, err := dialEnroll(ctx, cfg, code, logf)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the relay at %s: %s. Nothing was changed on this hub", code.Addr(), uplink.Describe(err))
	}
	r, err := enroll.Enroll(ctx, c, code, k.Public(), software)
	if err != nil {
		return nil, err
	}
	e := &Enrollment{
		Relay:          code.Addr(),
		RelayPublicKey: r.RelayKey.String(),
		RelayTLS:       r.RelayTLS,
		Hub:            r.Hub,
		TunnelIP:       r.TunnelIP,
		RelayTunnelIP:  r.RelayTunnelIP,
		URL:            r.URL,
		Enrolled:       time.Now().UTC().Truncate(time.Second),
	}
	// The result must make a config the agent can run before it replaces
	// what the hub has.
	if err := e.check(); err != nil {
		return nil, fmt.Errorf("the relay's answer is unusable (%v); nothing was changed on this hub", err)
	}
	trial := *cfg
	trial.enrollment, trial.enrollApplied, trial.overridden = e, false, nil
	if err := trial.Validate(); err != nil {
		return nil, fmt.Errorf("the relay's answer is unusable (%v); nothing was changed on this hub", err)
	}
	if created {
		if err := vpn.SavePrivateKey(cfg.PrivateKeyFile, k); err != nil {
			return nil, fmt.Errorf("writing this hub's key: %w", err)
		}
		logf("agent: created this hub's key in %s; public key %s", cfg.PrivateKeyFile, k.Public())
	}
	if err := e.save(path); err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	logf("agent: enrolled as hub %q at relay %s (tunnel address %s)", e.Hub, e.Relay, e.TunnelIP)
	return e, nil
}

// dialEnroll opens the enrollment's connection to the code's relay with
// the dialer the tunnel uses (relayProxy, relayDialer): the one place an
// enrollment dials.
func dialEnroll(ctx context.Context, cfg *Config, code enroll.Code, logf logger.Logf) (net.Conn, error) {
	rc := *cfg
	rc.Relay = code.Addr()
	if err := rc.parseRelay(); err != nil {
		return nil, err
	}
	// Enrollment is framed TCP whatever the tunnel's transport: over
	// "auto"'s routes (the agent port, else TLS on the relay's 443, else
	// that through the proxy), unless the config chose TCP or TLS.
	if !rc.transportSet || rc.Transport == "udp" {
		rc.Transport = "auto"
	}
	if !rc.relayTLSSet {
		rc.RelayTLS = net.JoinHostPort(rc.relayHost, "443")
	}
	var res *dnsfix.Resolver
	if rc.relayIsName() {
		var err error
		if res, err = rc.DNSResolver(logf); err != nil {
			return nil, err
		}
	}
	proxy, err := relayProxy(&rc, logf)
	if err != nil {
		return nil, err
	}
	c, _, err := relayDialer(&rc, res, proxy).DialRelay(ctx)
	return c, err
}

// Enroll is the API's enrollment (localapi.Agent): Enroll with this
// agent's config, then a restart to connect with the new enrollment. An
// agent enrolls at most once per start.
func (a *Agent) Enroll(ctx context.Context, code string) (localapi.EnrollResponse, error) {
	c, err := enroll.Parse(code)
	if err != nil {
		return localapi.EnrollResponse{}, err
	}
	if !a.enrolling.TryLock() {
		return localapi.EnrollResponse{}, localapi.ErrEnrolling
	}
	e, err := Enroll(ctx, a.cfg, c, a.software(), a.logf)
	if err != nil {
		a.enrolling.Unlock()
		a.logf("agent: enrolling at %s failed: %v", c.Relay, err)
		return localapi.EnrollResponse{}, err
	}
	a.requestRestartFor(a.cfg.Update.InstalledBinary(), "agent: restarting to connect as hub "+e.Hub)
	return localapi.EnrollResponse{Hub: e.Hub, URL: e.URL, Relay: e.Relay}, nil
}
