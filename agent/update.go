package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/selfupdate"
)

// The agent's part in updating itself is wiring: the updater (package
// selfupdate) gets the [update] table, the state folder, a logger, the
// clock, and an HTTP client that reaches the relay's release server
// through the tunnel; the local API exposes it.

// newUpdater wires the agent's updater.
func (a *Agent) newUpdater() *selfupdate.Updater {
	return selfupdate.New(selfupdate.Options{
		Config:     &a.cfg.Update,
		StateDir:   a.cfg.dir,
		ConfigFile: a.cfg.path,
		Running:    a.version,
		Arch:       a.hub.Arch,
		Client:     a.releaseClient(),
		Logf:       a.logf,
		Now:        time.Now,
		Restart:    a.requestRestart,
	})
}

// releaseClient fetches releases: through the tunnel from the relay's
// address, over the hub's network from anywhere else.
func (a *Agent) releaseClient() *http.Client {
	direct := &net.Dialer{Timeout: 15 * time.Second}
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr() == a.cfg.relayTunnelIP {
				if a.stack == nil {
					return nil, errors.New("the tunnel is off")
				}
				return a.stack.DialTCP(ctx, ap)
			}
			return direct.DialContext(ctx, network, addr)
		},
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConns:          1,
		IdleConnTimeout:       30 * time.Second,
	}
	if ap, err := netip.ParseAddrPort(a.cfg.Update.ReleaseURL().Host); err == nil && ap.Addr() == a.cfg.relayTunnelIP {
		tr.Proxy = nil // the tunnel needs no proxy
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Minute}
}

// service is the relay's release server inside the tunnel, whose replies
// the firewall must admit; invalid when releases come from elsewhere.
func (c *Config) releaseService() netip.AddrPort {
	ap, err := netip.ParseAddrPort(c.Update.ReleaseURL().Host)
	if err != nil || ap.Addr() != c.relayTunnelIP {
		return netip.AddrPort{}
	}
	return ap
}

var _ localapi.Agent = (*Agent)(nil)

// CheckUpdate is the API's update check (localapi.Agent).
func (a *Agent) CheckUpdate(ctx context.Context) (localapi.UpdateStatus, error) {
	st, err := a.upd.CheckNow(ctx)
	return st, updateWords(err)
}

// InstallUpdate is the API's install (localapi.Agent).
func (a *Agent) InstallUpdate(ctx context.Context, opt localapi.InstallOptions) (string, error) {
	v, err := a.upd.Install(ctx, opt)
	return v, updateWords(err)
}

// updateWords gives an update error the kind selfupdate.Explain finds
// (errors.Is still sees ErrBusy through it).
func updateWords(err error) error {
	if w := selfupdate.Explain(err); w.Kind != "" {
		return localapi.Said(w.Kind, w.Detail, err)
	}
	return err
}

// APIToken is the token the local API's actions need (localapi.Agent).
func (a *Agent) APIToken() string { return a.token }

// checkStateFiles reads or makes the local API's token in the config
// folder (without one the agent still runs; only the API's actions are
// refused) and says which state files the config ignored.
func (a *Agent) checkStateFiles() {
	for _, s := range a.cfg.ignored {
		a.logf("agent: warning: %s", s)
	}
	if a.cfg.dir == "" {
		return
	}
	tok, replaced, err := localapi.LoadOrCreateToken(a.cfg.dir)
	switch {
	case err != nil:
		a.logf("agent: %v; the local API refuses every action until a restart", err)
	case replaced:
		a.cfg.ignored = append(a.cfg.ignored, localapi.TokenFile+" was not a token; made a new one")
		a.logf("agent: warning: %s was not a token; made a new one", localapi.TokenFile)
	}
	a.token = tok
	if n := resultNote(a.cfg.dir); n != "" {
		a.logf("agent: warning: %s", n)
	}
}

// resultNote says that the last update's result file is damaged, or "".
func resultNote(dir string) string {
	if _, err := selfupdate.ReadResult(dir); err != nil {
		return fmt.Sprintf("%v: damaged, ignored (no last update result to show; the next update writes it again)", err)
	}
	return ""
}

// ignoredFiles is the status's list of state files the agent could not
// use, each with what it did instead.
func (a *Agent) ignoredFiles() []string {
	out := append([]string(nil), a.cfg.ignored...)
	if r := a.dns.Load(); r != nil {
		if n := r.CacheNote(); n != "" {
			out = append(out, n)
		}
	}
	if a.cfg.dir != "" {
		if n := resultNote(a.cfg.dir); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// APITokenDir is the folder of the local API's token (localapi.ReadToken):
// the config file's.
func (c *Config) APITokenDir() string { return c.dir }

// RecoverUpdate finishes an interrupted update before the agent starts. It
// returns the binary to run instead of this one, or "".
func RecoverUpdate(cfg *Config, running string) (string, error) {
	return cfg.Update.RecoverBeforeStart(cfg.dir, running)
}

// Installer returns the selfupdate.Installer for this agent's config: it
// health-checks the new version through the agent's status API.
func (c *Config) Installer(logf logger.Logf) *selfupdate.Installer {
	return c.Update.Installer(c.dir, localapi.NewClient(c.UIListen), logf)
}
