package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hubtunnel/hubtunnel/config"
	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/selfupdate"
	"github.com/hubtunnel/hubtunnel/version"
)

// UpdateConfig is the [update] table: where releases come from, whether
// they are installed by themselves, and how the agent is restarted.
type UpdateConfig struct {
	// Auto installs a new release by itself inside Window. Default true:
	// the agent is what stands between the internet and the hub, and a
	// release that does not bring the tunnel up is rolled back.
	Auto *bool `toml:"auto"`
	// Window is when automatic installs happen, local time, "HH:MM-HH:MM"
	// (may wrap midnight). Default "03:00-05:00".
	Window string `toml:"window"`
	// URL is the release folder. Default: the relay's, through the tunnel
	// (http://<relay_tunnel_ip>/releases/), which needs no DNS, proxy,
	// clock or further port. Any other http(s) URL is fetched over the
	// hub's own network.
	URL string `toml:"url"`
	// PublicKey pins the release signing key (ed25519, base64). Default:
	// the key built into the release; a development build has none and
	// does not update without one.
	PublicKey string `toml:"public_key"`
	// Restart restarts the agent, as a command and its arguments.
	// Default ["/usr/local/etc/config/rc.d/hubtunnel", "restart"].
	Restart []string `toml:"restart"`
	// DownloadDir holds downloads until they are installed. Default
	// "/usr/local/tmp" (on a CCU /tmp is a small tmpfs mounted noexec).
	DownloadDir string `toml:"download_dir"`
	// HealthTimeout is how long a new version has to bring the tunnel up
	// before it is rolled back. Default "2m".
	HealthTimeout string `toml:"health_timeout"`
	// Binary is the installed agent binary. Default: the running one.
	Binary string `toml:"binary"`

	url           *url.URL
	keys          []ed25519.PublicKey
	window        window
	healthTimeout time.Duration
}

func (u *UpdateConfig) validate(relayTunnelIP netip.Addr) error {
	var err error
	if u.Window == "" {
		u.Window = "03:00-05:00"
	}
	if u.window, err = parseWindow(u.Window); err != nil {
		return config.Errorf("update.window", "%v", err)
	}
	if u.URL == "" {
		u.url = &url.URL{Scheme: "http", Host: netip.AddrPortFrom(relayTunnelIP, 80).String(), Path: "/releases/"}
	} else {
		if u.url, err = url.Parse(u.URL); err != nil || (u.url.Scheme != "http" && u.url.Scheme != "https") || u.url.Host == "" {
			return config.Errorf("update.url", "%q: want an http:// or https:// URL", u.URL)
		}
		if u.url.Path == "" || u.url.Path[len(u.url.Path)-1] != '/' {
			u.url.Path += "/"
		}
	}
	u.keys = nil
	if u.PublicKey != "" {
		k, err := selfupdate.ParsePublicKey(u.PublicKey)
		if err != nil {
			return config.Errorf("update.public_key", "%v", err)
		}
		u.keys = append(u.keys, k)
	} else if k, ok := selfupdate.BuiltinKey(); ok {
		u.keys = append(u.keys, k)
	}
	if u.Restart == nil {
		u.Restart = []string{"/usr/local/etc/config/rc.d/hubtunnel", "restart"}
	}
	if len(u.Restart) == 0 || u.Restart[0] == "" {
		return config.Errorf("update.restart", "want a command, e.g. [\"/usr/local/etc/config/rc.d/hubtunnel\", \"restart\"]")
	}
	if u.DownloadDir == "" {
		u.DownloadDir = "/usr/local/tmp"
	}
	u.healthTimeout, err = durationKey("update.health_timeout", u.HealthTimeout, 2*time.Minute, 5*time.Second, 30*time.Minute)
	return err
}

// IsAuto reports whether releases are installed automatically.
func (u *UpdateConfig) IsAuto() bool { return u.Auto == nil || *u.Auto }

// window is a daily time span in minutes after local midnight; end may be
// below start when it wraps midnight.
type window struct{ start, end int }

func parseWindow(s string) (window, error) {
	var w window
	bad := fmt.Errorf("%q: want \"HH:MM-HH:MM\", e.g. \"03:00-05:00\"", s)
	var h1, m1, h2, m2 int
	if n, err := fmt.Sscanf(s, "%d:%d-%d:%d", &h1, &m1, &h2, &m2); n != 4 || err != nil {
		return w, bad
	}
	if h1 < 0 || h1 > 23 || h2 < 0 || h2 > 24 || m1 < 0 || m1 > 59 || m2 < 0 || m2 > 59 || (h2 == 24 && m2 != 0) {
		return w, bad
	}
	w = window{h1*60 + m1, h2*60 + m2}
	if w.start == w.end {
		return w, fmt.Errorf("%q: an empty window", s)
	}
	return w, nil
}

func (w window) length() int {
	if w.end > w.start {
		return w.end - w.start
	}
	return w.end + 24*60 - w.start
}

// next returns a random moment inside the window: in the one now is in,
// else in the next one. r picks a fraction in [0, 1).
func (w window) next(now time.Time, r float64) time.Time {
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	start := midnight.Add(time.Duration(w.start) * time.Minute)
	if start.After(now) {
		start = start.AddDate(0, 0, -1) // yesterday's window may still be open
	}
	end := start.Add(time.Duration(w.length()) * time.Minute)
	if !now.Before(end) {
		start, end = start.AddDate(0, 0, 1), end.AddDate(0, 0, 1)
	}
	if now.After(start) {
		start = now
	}
	return start.Add(time.Duration(r * float64(end.Sub(start))))
}

// nextDaily returns the next time at minute m of the day after now.
func nextDaily(now time.Time, m int) time.Time {
	t := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location()).Add(time.Duration(m) * time.Minute)
	if !t.After(now) {
		t = t.AddDate(0, 0, 1)
	}
	return t
}

// updater checks for releases, installs them on request or by itself, and
// finishes updates whose installer died.
type updater struct {
	a          *Agent
	cfg        *UpdateConfig
	dir        string // state folder: the config's
	binary     string
	arch       string
	src        selfupdate.Source
	current    string
	dailyMin   int           // minute of the day of the daily check
	firstCheck time.Duration // after start: soon, but not all hubs of a rebooted relay at once

	mu     sync.Mutex
	st     localapi.UpdateStatus
	wake   chan struct{}
	now    func() time.Time
	random func() float64
}

func newUpdater(a *Agent) *updater {
	cfg := &a.cfg.Update
	u := &updater{
		a:       a,
		cfg:     cfg,
		dir:     a.cfg.dir,
		binary:  cfg.Binary,
		arch:    a.hub.Arch,
		current: a.version,
		wake:    make(chan struct{}, 1),
		now:     time.Now,
		random:  rand.Float64,
	}
	if u.binary == "" {
		u.binary, _ = os.Executable()
	}
	u.dailyMin = rand.IntN(24 * 60)
	u.firstCheck = 2*time.Minute + rand.N(28*time.Minute)
	u.src = selfupdate.Source{URL: cfg.url, Keys: cfg.keys, Client: a.releaseClient()}
	u.st = localapi.UpdateStatus{Auto: cfg.IsAuto(), Window: cfg.Window, Latest: selfupdate.ReadLatest(u.dir)}
	u.st.Available = u.newer(u.st.Latest)
	u.st.LastResult, _ = selfupdate.ReadResult(u.dir)
	return u
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
	if ap, err := netip.ParseAddrPort(a.cfg.Update.url.Host); err == nil && ap.Addr() == a.cfg.relayTunnelIP {
		tr.Proxy = nil // the tunnel needs no proxy
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Minute}
}

// service is the relay's release server inside the tunnel, whose replies
// the firewall must admit; invalid when releases come from elsewhere.
func (c *Config) releaseService() netip.AddrPort {
	ap, err := netip.ParseAddrPort(c.Update.url.Host)
	if err != nil || ap.Addr() != c.relayTunnelIP {
		return netip.AddrPort{}
	}
	return ap
}

func (u *updater) newer(v string) bool {
	c, err := version.Compare(v, u.current)
	return err == nil && c > 0
}

// Status is the update part of the agent's status.
func (u *updater) Status() localapi.UpdateStatus {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.st
	if r, err := selfupdate.ReadResult(u.dir); err == nil {
		st.LastResult = r
	}
	return st
}

// Check fetches the newest release's manifest and records what it says.
func (u *updater) Check(ctx context.Context) (localapi.UpdateStatus, error) {
	m, err := u.src.Manifest(ctx, "")
	u.mu.Lock()
	u.st.CheckedAt = u.now().UTC().Truncate(time.Second)
	if err != nil {
		u.st.CheckError = err.Error()
	} else {
		u.st.CheckError, u.st.Latest = "", m.Version
		u.st.Available = u.newer(m.Version)
	}
	u.mu.Unlock()
	if err != nil {
		return u.Status(), err
	}
	if err := selfupdate.WriteLatest(u.dir, m.Version); err != nil {
		u.a.logf("update: %v", err)
	}
	return u.Status(), nil
}

// Install downloads and verifies a release and hands it to the installer
// process, which restarts the agent. It returns the version being
// installed once the installer runs.
func (u *updater) Install(ctx context.Context, opt localapi.InstallOptions) (string, error) {
	if len(u.cfg.keys) == 0 {
		return "", errors.New("no release key: this build has none built in; set [update] public_key")
	}
	lock, err := selfupdate.Lock(u.dir)
	if err != nil {
		return "", err
	}
	defer lock.Close() // the installer keeps its own copy
	selfupdate.CleanDownloads(u.cfg.DownloadDir)
	m, err := u.src.Manifest(ctx, opt.Version)
	if err != nil {
		return "", err
	}
	c, err := version.Compare(m.Version, u.current)
	switch {
	case err != nil:
		// A development build: no order to keep, the user asked for it.
	case c == 0:
		return "", fmt.Errorf("%s is already running", m.Version)
	case c < 0 && !opt.AllowDowngrade:
		return "", fmt.Errorf("%s is older than the running %s; a downgrade must be asked for explicitly", m.Version, u.current)
	}
	path, err := u.src.Download(ctx, m, u.arch, u.cfg.DownloadDir)
	if err != nil {
		return "", err
	}
	if err := selfupdate.CheckBinary(ctx, path, u.arch, m.Version); err != nil {
		os.Remove(path)
		return "", err
	}
	u.setInstalling(m.Version)
	if err := u.startInstaller(lock, path, m.Version); err != nil {
		u.setInstalling("")
		os.Remove(path)
		return "", err
	}
	u.a.logf("update: installing %s (running %s)", m.Version, u.current)
	return m.Version, nil
}

// startInstaller runs "hubtunnel update apply" from the installed binary,
// in its own session so the restart does not end it, holding the lock.
func (u *updater) startInstaller(lock *os.File, path, to string) error {
	logf, err := os.Create(filepath.Join(u.dir, selfupdate.LogFile))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(u.binary, "update", "apply", "--config", u.a.cfg.path, "--file", path, "--from", u.current, "--to", to)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{lock} // fd 3 in the installer
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the installer: %w", err)
	}
	go func() {
		// Normally the restart ends this agent first. If the installer
		// ends while we live, it has failed before the restart (its
		// result says why) or rolled back without restarting us.
		cmd.Wait()
		u.setInstalling("")
	}()
	return nil
}

func (u *updater) setInstalling(v string) {
	u.mu.Lock()
	u.st.Installing = v
	u.mu.Unlock()
}

// run is the updater's loop: recover an interrupted update, check daily
// at a random minute (the first time soon after start), and install new
// releases inside the window when Auto is on.
func (u *updater) run() {
	defer u.a.wg.Done()
	recoverTick := time.NewTicker(30 * time.Second)
	defer recoverTick.Stop()
	nextCheck := u.now().Add(u.firstCheck)
	var planned time.Time
	for {
		u.mu.Lock()
		u.st.NextCheck, u.st.PlannedInstall = nextCheck, planned
		u.mu.Unlock()
		wake := nextCheck
		if !planned.IsZero() && planned.Before(wake) {
			wake = planned
		}
		timer := time.NewTimer(wake.Sub(u.now()))
		select {
		case <-u.a.closing:
			timer.Stop()
			return
		case <-recoverTick.C:
			timer.Stop()
			u.recover()
			continue
		case <-u.wake:
			// A check from the API: plan from what it found.
			timer.Stop()
			planned = u.plan(u.now())
			continue
		case <-timer.C:
		}
		timer.Stop()
		now := u.now()
		if !now.Before(nextCheck) {
			nextCheck = nextDaily(now, u.dailyMin)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			_, err := u.Check(ctx)
			cancel()
			if err != nil {
				u.a.logf("update: check: %v", err)
			}
			planned = u.plan(now)
		}
		if !planned.IsZero() && !now.Before(planned) {
			planned = time.Time{}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			if _, err := u.Install(ctx, localapi.InstallOptions{}); err != nil {
				u.a.logf("update: automatic install: %v", err)
			}
			cancel()
		}
	}
}

// plan returns when Auto installs the newest release seen, or zero: not
// Auto, nothing newer, or that version failed before.
func (u *updater) plan(now time.Time) time.Time {
	st := u.Status()
	if !st.Available || !u.cfg.IsAuto() || u.failedBefore(st.Latest) {
		return time.Time{}
	}
	at := u.cfg.window.next(now, u.random())
	u.a.logf("update: %s is available; installing it at %s", st.Latest, at.Format("2006-01-02 15:04"))
	return at
}

// CheckNow is a check a user asked for; the automatic updates plan from
// its answer at once.
func (u *updater) CheckNow(ctx context.Context) (localapi.UpdateStatus, error) {
	st, err := u.Check(ctx)
	if err == nil {
		select {
		case u.wake <- struct{}{}:
		default:
		}
	}
	return st, err
}

// failedBefore reports whether installing v already failed: automatic
// updates do not try it again (a user still can).
func (u *updater) failedBefore(v string) bool {
	r, _ := selfupdate.ReadResult(u.dir)
	return r != nil && !r.OK && r.To == v
}

// recover finishes an update whose installer died. If that leaves another
// version installed than the one running, the agent restarts into it.
func (u *updater) recover() {
	rec, err := selfupdate.Recover(u.dir, u.binary)
	if err != nil {
		u.a.logf("update: %v", err)
		return
	}
	if rec == nil {
		return
	}
	if rec.RolledBack {
		u.a.logf("update: the update to %s was interrupted; rolled back to %s", rec.To, rec.From)
	} else {
		u.a.logf("update: the update to %s was interrupted; the installed binary is left as it is", rec.To)
	}
	u.setInstalling("")
	if rec.RolledBack && u.current == rec.To {
		u.a.requestRestart(u.binary)
	}
}

// RecoverUpdate finishes an interrupted update before the agent starts. It
// returns the binary to run instead of this one, or "".
func RecoverUpdate(cfg *Config, running string) (string, error) {
	binary := cfg.Update.Binary
	if binary == "" {
		binary, _ = os.Executable()
	}
	rec, err := selfupdate.Recover(cfg.dir, binary)
	if err != nil || rec == nil || !rec.RolledBack || rec.To != running {
		return "", err
	}
	return binary, nil
}

// InheritedLock is the installer's side of startInstaller: the update
// lock arrives as fd 3.
func InheritedLock() (*os.File, error) {
	f := os.NewFile(3, "update.lock")
	if f == nil {
		return nil, errors.New("no update lock inherited")
	}
	if _, err := f.Stat(); err != nil {
		return nil, errors.New("no update lock inherited: hubtunnel update apply is run by the agent")
	}
	return f, nil
}

// Installer returns the selfupdate.Installer for this agent's config.
func (c *Config) Installer(logf logger.Logf) *selfupdate.Installer {
	binary := c.Update.Binary
	if binary == "" {
		binary, _ = os.Executable()
	}
	return &selfupdate.Installer{
		Binary:        binary,
		StateDir:      c.dir,
		Restart:       c.Update.Restart,
		API:           localapi.NewClient(c.UIListen),
		HealthTimeout: c.Update.healthTimeout,
		Logf:          logf,
	}
}

var _ localapi.Agent = (*Agent)(nil)

// CheckUpdate is the API's update check (localapi.Agent).
func (a *Agent) CheckUpdate(ctx context.Context) (localapi.UpdateStatus, error) {
	return a.upd.CheckNow(ctx)
}

// InstallUpdate is the API's install (localapi.Agent).
func (a *Agent) InstallUpdate(ctx context.Context, opt localapi.InstallOptions) (string, error) {
	return a.upd.Install(ctx, opt)
}
