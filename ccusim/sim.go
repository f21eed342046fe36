// Package ccusim is a stand-in for the services of a HomeMatic hub (CCU3,
// RaspberryMatic), for hubtunnel's demo and end-to-end tests. A Sim
// listens where a CCU does and answers like one:
//
//	webui  (CCU port 80)    GET / (a page titled "HomeMatic WebUI"), GET /files/<name>,
//	                        POST /echo, GET /api/devices (current values as JSON),
//	                        GET /api/requests (what reached the Sim: Counts, for tests)
//	wired  (2000)           XML-RPC of BidCos-Wired: one HMW-IO-12-Sw7-DR
//	rf     (2001)           XML-RPC of BidCos-RF: a HM-CC-RT-DN thermostat and a HM-LC-Sw1-Pl switch
//	hmip   (2010)           XML-RPC of HmIP-RF: a HMIP-PSM switch
//	                        POST /login.htm (a new WebUI session: its sid), POST /logout.htm?sid=…
//	script (8181)           POST /tclrega.exe and /rega.exe: Write/WriteLine of a HomeMatic script,
//	                        system.GetSessionVarStr('<id>') of a WebUI session
//
// Device values live in memory, shared by all services of one Sim.
//
// A Sim must never serve a file outside Config.FilesDir, never panic or
// hang on bad input (every XML-RPC error is an XML-RPC fault), never read
// an unbounded request into memory, and never send a callback or any
// other traffic of its own: it only answers.
package ccusim

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
)

// Config configures a Sim. The zero value works: every service on a free
// loopback port, which is what tests want. DefaultConfig has a CCU's ports.
type Config struct {
	// Name is the hub's name shown on the WebUI page; "" means "ccusim".
	Name string
	// Host is the address to listen on; "" means "127.0.0.1".
	Host string
	// Ports of the services. 0 means any free port (see Sim.Addr), -1 off.
	// A CCU uses 80, 2000, 2001, 2010 and 8181 (DefaultConfig).
	WebUIPort, WiredPort, RFPort, HmIPPort, ScriptPort int
	// FilesDir is served under /files/ on the WebUI port; "" means no
	// /files/. It must be a directory; nothing outside it is served, not
	// even through symlinks.
	FilesDir string
	// Logf receives the Sim's log lines (start, faults, server errors),
	// prefixed "ccusim: "; nil means no logging.
	Logf logger.Logf
}

// DefaultConfig returns the configuration of a real CCU: its ports, on
// 127.0.0.1, named "ccusim".
func DefaultConfig() Config {
	return Config{
		Name:       "ccusim",
		Host:       "127.0.0.1",
		WebUIPort:  80,
		WiredPort:  2000,
		RFPort:     2001,
		HmIPPort:   2010,
		ScriptPort: 8181,
	}
}

// Services returns the names Addr knows, in the order of the CCU's ports.
func Services() []string {
	return []string{"webui", "wired", "rf", "hmip", "script"}
}

func (c *Config) port(service string) (field string, port int) {
	switch service {
	case "webui":
		return "WebUIPort", c.WebUIPort
	case "wired":
		return "WiredPort", c.WiredPort
	case "rf":
		return "RFPort", c.RFPort
	case "hmip":
		return "HmIPPort", c.HmIPPort
	case "script":
		return "ScriptPort", c.ScriptPort
	}
	panic("ccusim: unknown service " + service)
}

// Sim is a simulated CCU. Make it with New, then Start it once and Close it.
type Sim struct {
	cfg    Config
	logf   logger.Logf
	ifaces []*iface
	store  *store
	peers  peers    // who connected to each service
	counts counts   // what reached each service
	logins sessions // the WebUI's sessions, which the script engine checks

	closeOnce sync.Once

	mu       sync.Mutex
	started  bool
	closed   bool
	services map[string]*service // by name; only while started
	root     *os.Root            // FilesDir, or nil
	handlers sync.WaitGroup      // running handlers; Add only under mu while !closed
}

// service is one listening HTTP server of a Sim.
type service struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{} // closed when Serve has returned
}

// New returns a Sim for cfg. Nothing listens before Start.
func New(cfg Config) *Sim {
	if cfg.Name == "" {
		cfg.Name = "ccusim"
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	logf := logger.WithPrefix(cfg.Logf, "ccusim: ")
	ifaces := catalog()
	return &Sim{cfg: cfg, logf: logf, ifaces: ifaces, store: newStore(ifaces)}
}

func (s *Sim) validate() error {
	for _, name := range Services() {
		field, port := s.cfg.port(name)
		if port < -1 || port > 65535 {
			return fmt.Errorf("ccusim.Start: Config.%s = %d: want a port from 0 to 65535 (0 = any free port) or -1 (off)", field, port)
		}
	}
	if s.cfg.FilesDir != "" {
		fi, err := os.Stat(s.cfg.FilesDir)
		if err != nil {
			return fmt.Errorf("ccusim.Start: Config.FilesDir: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("ccusim.Start: Config.FilesDir: %s is not a directory", s.cfg.FilesDir)
		}
	}
	return nil
}

// Start opens every enabled service's listener and starts serving. If one
// cannot listen, Start closes those it opened and returns the error:
// all services or none. Start may be called once successfully, and not
// after Close.
func (s *Sim) Start() (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("ccusim.Start: called after Close")
	}
	if s.started {
		return errors.New("ccusim.Start: called twice")
	}
	if err := s.validate(); err != nil {
		return err
	}

	var root *os.Root
	if s.cfg.FilesDir != "" {
		if root, err = os.OpenRoot(s.cfg.FilesDir); err != nil {
			return fmt.Errorf("ccusim.Start: Config.FilesDir: %w", err)
		}
	}
	handlers := map[string]http.Handler{
		"webui":  (&webUI{name: s.cfg.Name, ifaces: s.ifaces, store: s.store, files: root, counts: &s.counts, logins: &s.logins}).handler(),
		"script": scriptHandler(&s.logins),
	}
	for _, f := range s.ifaces {
		handlers[f.service] = &rpcServer{iface: f, store: s.store, logf: s.logf}
	}

	services := map[string]*service{}
	defer func() {
		if err == nil {
			return
		}
		for _, svc := range services {
			svc.ln.Close()
		}
		if root != nil {
			root.Close()
		}
	}()
	for _, name := range Services() {
		_, port := s.cfg.port(name)
		if port < 0 {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(s.cfg.Host, strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("ccusim.Start: %s: %w", name, err)
		}
		srv := &http.Server{
			Handler:           s.track(name, handlers[name]),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          log.New(logWriter(s.logf), name+": ", 0),
		}
		if name != "webui" {
			// Requests are small (1 MiB at most); uploads to /echo may
			// take long through a slow tunnel, so the WebUI has no limit.
			srv.ReadTimeout = time.Minute
		}
		ln = &recordingListener{Listener: ln, service: name, p: &s.peers}
		services[name] = &service{ln: ln, srv: srv, done: make(chan struct{})}
	}

	s.started = true
	s.services = services
	s.root = root
	for _, name := range Services() {
		svc := services[name]
		if svc == nil {
			continue
		}
		s.logf("%s listening on %s", name, svc.ln.Addr())
		go func() {
			defer close(svc.done)
			if err := svc.srv.Serve(svc.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.logf("%s: %v", name, err)
			}
		}()
	}
	return nil
}

// track counts running handlers so that Close can wait for them, turns
// requests away once Close has begun, and counts what reached service.
func (s *Sim) track(service string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.counts.count(service, r)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			w.Header().Set("Connection", "close")
			http.Error(w, "ccusim is shutting down", http.StatusServiceUnavailable)
			return
		}
		s.handlers.Add(1)
		s.mu.Unlock()
		defer s.handlers.Done()
		h.ServeHTTP(w, r)
	})
}

// Addr returns the host:port a service ("webui", "wired", "rf", "hmip",
// "script") is listening on, or "" if it is off, unknown or Start has not
// succeeded.
func (s *Sim) Addr(service string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if svc := s.services[service]; svc != nil {
		return svc.ln.Addr().String()
	}
	return ""
}

// Close stops every service, closing their connections, and returns once
// all servers and handlers have exited. It may be called more than once,
// and before Start.
func (s *Sim) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		services := s.services
		root := s.root
		s.mu.Unlock()

		for _, svc := range services {
			svc.srv.Close()
		}
		for _, svc := range services {
			<-svc.done
		}
		s.handlers.Wait()
		if root != nil {
			root.Close()
		}
	})
	return nil
}

// logWriter adapts a Logf to the io.Writer of an http.Server's ErrorLog.
type logWriter logger.Logf

func (l logWriter) Write(p []byte) (int, error) {
	l("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
