package selfupdate

import (
	"crypto/ed25519"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/config"
	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/localapi"
)

// Config is the agent's [update] table: where releases come from, whether
// they are installed by themselves, and how the agent is restarted. The
// agent's Config embeds it and calls Validate.
type Config struct {
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
	// DownloadDir holds downloads until they are installed, in folders
	// of the updater's own (DownloadFolder, InstallFolder). Default
	// "/usr/local/tmp" (on a CCU /tmp is a small tmpfs mounted noexec).
	DownloadDir string `toml:"download_dir"`
	// HealthTimeout is how long a new version has to bring the tunnel up
	// before it is rolled back. Default "2m".
	HealthTimeout string `toml:"health_timeout"`
	// Binary is the installed agent binary. Default: the running one.
	Binary string `toml:"binary"`

	// Parsed forms, filled by Validate.
	url           *url.URL
	keys          []ed25519.PublicKey
	window        window
	healthTimeout time.Duration
}

// Validate fills in defaults and checks every value, naming the key that
// is wrong (as a *config.KeyError "update.<key>"). relayTunnelIP is the
// relay's address inside the tunnel, whose release server is the default.
func (u *Config) Validate(relayTunnelIP netip.Addr) error {
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
		k, err := ParsePublicKey(u.PublicKey)
		if err != nil {
			return config.Errorf("update.public_key", "%v", err)
		}
		u.keys = append(u.keys, k)
	} else if k, ok := BuiltinKey(); ok {
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
	u.healthTimeout, err = config.Duration("update.health_timeout", u.HealthTimeout, 2*time.Minute, 5*time.Second, 30*time.Minute)
	return err
}

// The updater's own folders inside DownloadDir (which may be shared, as a
// CCU's /usr/local/tmp is): each 0700, made and checked by PrivateDir.
const (
	DownloadFolder = "hubtunnel-update"  // downloads, until the installer copies them
	InstallFolder  = "hubtunnel-install" // the installer's copy, which it installs
)

// downloads is the updater's download folder.
func (u *Config) downloads() string { return filepath.Join(u.DownloadDir, DownloadFolder) }

// IsAuto reports whether releases are installed automatically.
func (u *Config) IsAuto() bool { return u.Auto == nil || *u.Auto }

// ReleaseURL is the release folder, ending in "/" (after Validate).
func (u *Config) ReleaseURL() *url.URL { return u.url }

// InstalledBinary is the agent binary an update replaces: Binary, else
// the running executable.
func (u *Config) InstalledBinary() string {
	if u.Binary != "" {
		return u.Binary
	}
	b, _ := os.Executable()
	return b
}

// Installer returns the Installer this config describes, for an agent
// whose state folder is stateDir and whose status API api answers.
func (u *Config) Installer(stateDir string, api *localapi.Client, logf logger.Logf) *Installer {
	return &Installer{
		Binary:        u.InstalledBinary(),
		StateDir:      stateDir,
		WorkDir:       filepath.Join(u.DownloadDir, InstallFolder),
		Restart:       u.Restart,
		API:           api,
		HealthTimeout: u.healthTimeout,
		Logf:          logger.OrDiscard(logf),
	}
}

// window is a daily time span in minutes after local midnight; end may be
// below start when it wraps midnight.
type window struct{ start, end int }

func parseWindow(s string) (window, error) {
	var w window
	bad := fmt.Errorf("%q: want \"HH:MM-HH:MM\", e.g. \"03:00-05:00\"", s)
	from, to, ok := strings.Cut(strings.TrimSpace(s), "-")
	h1, m1, ok1 := clock(from)
	h2, m2, ok2 := clock(to)
	if !ok || !ok1 || !ok2 {
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

// clock reads "H:MM" or "HH:MM" (the minutes may be one digit too), without
// checking the ranges. (Not fmt.Sscanf: its scanner cost the agent 23 KB.)
func clock(s string) (h, m int, ok bool) {
	hs, ms, ok := strings.Cut(s, ":")
	h, okh := smallNumber(hs)
	m, okm := smallNumber(ms)
	return h, m, ok && okh && okm
}

// smallNumber reads one or two decimal digits.
func smallNumber(s string) (int, bool) {
	if len(s) < 1 || len(s) > 2 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
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
