// Package panel is the hub owner's settings panel: the page behind the
// hubtunnel button in the CCU's control panel, served by the agent on its
// ui_listen (loopback) under Prefix, which the CCU's lighttpd proxies to it.
//
//	GET  Prefix                     the page (?sid=@XXXXXXXXXX@, the WebUI's session)
//	GET  Prefix+"ping"              "ok": the agent runs (no session needed)
//	GET  Prefix+"assets/<name>"     the page's CSS and JS (no session needed)
//	GET  Prefix+"api/state"         status, settings, port map (JSON)
//	GET  Prefix+"api/logs"          the agent's last log lines
//	POST Prefix+"api/enroll"        {"code": …}
//	POST Prefix+"api/settings"      Settings: saved whole or not at all, then applied by a restart
//	POST Prefix+"api/restart"       the agent's re-exec restart
//	POST Prefix+"api/update/check"  check for a release now
//	POST Prefix+"api/update/install" install the newest release
//	POST Prefix+"api/diag/dns"      how the relay's name resolves (dnsfix's trace)
//	POST Prefix+"api/diag/connect"  dial the relay now, say how it went
//	GET  Prefix+"stats", Prefix+"api/stats"  the statistics page (Config.Stats)
//
// Every request but ping and the assets needs a live CCU session, checked
// as the CCU's own addon pages check it: system.GetSessionVarStr on the
// script engine (session.go); the page takes it from ?sid=, the API calls
// from the X-CCU-Session header. Every POST must also carry a JSON body
// and come from the page itself (Sec-Fetch-Site: same-origin, or an Origin
// equal to the request's own), else 403.
//
// The panel must never hand a sid that is not ten letters and digits to
// the script engine (the script runs as root), never cache a refusal, never
// show a secret (codes, keys), and never import package agent: it knows the
// agent only through the Agent interface.
package panel

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/localapi"
)

// Prefix is where the panel lives, on the agent's ui_listen and, through
// the CCU's lighttpd, on the WebUI's own address.
const Prefix = "/addons/hubtunnel/panel/"

// Agent is what the panel shows and acts on. agent.Agent implements it.
type Agent interface {
	// Status, CheckUpdate, InstallUpdate and Enroll are the local API's
	// (localapi.Agent): the same contracts.
	Status() localapi.Status
	CheckUpdate(ctx context.Context) (localapi.UpdateStatus, error)
	InstallUpdate(ctx context.Context, opt localapi.InstallOptions) (string, error)
	Enroll(ctx context.Context, code string) (localapi.EnrollResponse, error)
	// Settings are the settings the panel manages, as the agent runs with
	// them (defaults filled in).
	Settings() Settings
	// SaveSettings writes s to the agent's config file, whole or not at
	// all, keeping every key the panel does not manage, and then restarts
	// the agent to apply it. It reports false, writing nothing, when s is
	// what runs already. A value the agent refuses is a *FieldError, and
	// nothing is written.
	SaveSettings(s Settings) (changed bool, err error)
	// Restart runs the agent again in place of itself (the panel is back
	// once it has started).
	Restart() error
	// PortMap is what each active tunnel port reaches on the hub, and at
	// which address of the relay.
	PortMap() []Port
	// DNSTrace resolves the relay's name now and tells how, as
	// `hubtunnel dns` prints it.
	DNSTrace(ctx context.Context) Finding
	// TestConnection dials the relay now over the configured transport
	// and returns what happened, in a hub owner's words.
	TestConnection(ctx context.Context) Finding
	// Logs are the agent's last log lines, oldest first.
	Logs() []string
}

// Finding is what a diagnostic found: whether all is well, its technical
// trace (lines, English, as the CLI prints them; may be empty), and its
// conclusion, in Words the page says in the owner's language.
type Finding struct {
	OK    bool
	Trace string
	Said  localapi.Words
}

// Settings are what the panel lets the owner change. The JSON names are
// the fields a FieldError names.
type Settings struct {
	Enabled      bool   `json:"enabled"`       // the tunnel runs (config enabled)
	AutoUpdate   bool   `json:"auto_update"`   // [update] auto
	UpdateWindow string `json:"update_window"` // [update] window, "HH:MM-HH:MM"
	// Proxy is "" (HTTPS_PROXY from the environment, else direct),
	// "none", or "http://host:port".
	Proxy         string   `json:"proxy"`
	AllowedCIDRs  []string `json:"allowed_cidrs"`
	DNSFallback   []string `json:"dns_fallback"`
	OptionalPorts []uint16 `json:"optional_ports"` // the enabled ones of 90, 8001, 8002
}

// FieldError is a settings value the agent refuses: Field is a Settings
// JSON name, Problem what is wrong with it, for the hub owner.
type FieldError struct {
	Field, Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Port is one line of the port map as the owner sees it.
type Port struct {
	Port     uint16 `json:"port"`          // the tunnel port
	Service  string `json:"service"`       // what answers, e.g. "XML-RPC wired"
	Local    string `json:"local"`         // where on the hub, host:port
	URL      string `json:"url,omitempty"` // at the relay; "" while the hub has no address there
	TLS      bool   `json:"tls"`
	Optional bool   `json:"optional"`
}

// Config is how the panel is set up. The zero value works on a CCU.
type Config struct {
	// Rega is the CCU's script engine, which checks WebUI sessions.
	// Default "http://127.0.0.1:8181".
	Rega string
	// LanguageFile holds the CCU's language ("de" or "en"), which its
	// WebUI is shown in. Default "/etc/config/systemLanguage"; without
	// it the browser's Accept-Language decides.
	LanguageFile string
	// Stats serves GET Prefix+"stats" and Prefix+"api/stats" (package
	// stats); nil answers that the statistics are not there yet.
	Stats http.Handler
	// HTTP reaches the script engine. Default: a client without proxy and
	// with a 5 s timeout.
	HTTP *http.Client
	// Now is the clock of the session cache. Default time.Now.
	Now  func() time.Time
	Logf logger.Logf
}

// Handler returns the panel for agent a. Mount it at Prefix on the agent's
// ui_listen mux.
func Handler(a Agent, cfg Config) http.Handler {
	if cfg.Rega == "" {
		cfg.Rega = "http://127.0.0.1:8181"
	}
	if cfg.LanguageFile == "" {
		cfg.LanguageFile = "/etc/config/systemLanguage"
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1}, Timeout: 5 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &server{a: a, cfg: cfg, logf: logger.WithPrefix(cfg.Logf, "panel: ")}
	s.sessions = newSessionChecker(cfg.Rega, cfg.HTTP, cfg.Now)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Prefix+"{$}", s.page)
	mux.HandleFunc("GET "+Prefix+"ping", s.ping)
	mux.HandleFunc("GET "+Prefix+"assets/{name}", s.asset)
	mux.HandleFunc("GET "+Prefix+"api/state", s.api(s.state))
	mux.HandleFunc("GET "+Prefix+"api/logs", s.api(s.logs))
	mux.HandleFunc("POST "+Prefix+"api/enroll", s.action(s.enroll))
	mux.HandleFunc("POST "+Prefix+"api/settings", s.action(s.saveSettings))
	mux.HandleFunc("POST "+Prefix+"api/restart", s.action(s.restart))
	mux.HandleFunc("POST "+Prefix+"api/update/check", s.action(s.check))
	mux.HandleFunc("POST "+Prefix+"api/update/install", s.action(s.install))
	mux.HandleFunc("POST "+Prefix+"api/diag/dns", s.action(s.diagDNS))
	mux.HandleFunc("POST "+Prefix+"api/diag/connect", s.action(s.diagConnect))
	stats := cfg.Stats
	if stats == nil {
		stats = http.HandlerFunc(s.noStats)
	}
	// The stats package's pages, behind the session check (its page
	// reads ?sid= as this one does; its API the header), in the panel's
	// language unless the address names one.
	stats = s.withLang(stats)
	mux.Handle("GET "+Prefix+"stats", s.pageSession(stats))
	mux.Handle("GET "+Prefix+"api/stats", s.api(stats.ServeHTTP))
	return securityHeaders(mux)
}

// securityHeaders: nothing of the panel is cached or framed by another
// site, no page loads anything from elsewhere, and the sid in the page's
// address never leaves in a Referer.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'self'; form-action 'none'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "SAMEORIGIN")
		h.ServeHTTP(w, r)
	})
}

type server struct {
	a        Agent
	cfg      Config
	logf     logger.Logf
	sessions *sessionChecker
}

func (s *server) ping(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, "ok")
}

// withLang hands h the request with ?lang= set to the panel's language
// (the CCU's, else the browser's) when it has none.
func (s *server) withLang(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("lang") == "" {
			r = r.Clone(r.Context())
			q := r.URL.Query()
			q.Set("lang", s.text(r).Lang)
			r.URL.RawQuery = q.Encode()
		}
		h.ServeHTTP(w, r)
	})
}

func (s *server) noStats(w http.ResponseWriter, r *http.Request) {
	t := s.text(r)
	http.Error(w, t.StatsMissing, http.StatusServiceUnavailable)
}
