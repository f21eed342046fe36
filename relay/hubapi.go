package relay

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
)

// hubAPIPort is where hubs reach the relay inside the tunnel: its releases
// and the key API. Agents admit replies from the relay's tunnel address on
// this port (firewall.Services).
const hubAPIPort = 80

// releaseName is what a release folder holds: flat, plain file names
// (manifest.json, manifest-0.2.0.json, hubtunnel-0.2.0-linux-armv7.gz).
var releaseName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

// serveHubAPI serves hubs through the tunnel, on port 80 of the relay's
// tunnel address: ReleasesDir under /releases/ (when set) and the key API
// under /hub/v1/ (keys.go). Only the relay's own netstack listens here:
// nothing of it is public, and a request's source address is a hub's
// tunnel address, which WireGuard only lets that hub's key send from.
func (s *Server) serveHubAPI() error {
	mux := http.NewServeMux()
	mux.Handle("/hub/v1/", s.keysHandler())
	var root *os.Root
	if s.cfg.ReleasesDir != "" {
		var err error
		if root, err = os.OpenRoot(s.cfg.ReleasesDir); err != nil {
			return fmt.Errorf("relay: releases_dir: %w", err)
		}
		mux.Handle("/releases/", s.releasesHandler(root))
	}
	ln, err := s.stack.ListenTCP(hubAPIPort)
	if err != nil {
		if root != nil {
			root.Close()
		}
		return fmt.Errorf("relay: hub API: %w", err)
	}
	s.hubAPI = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if root != nil {
			defer root.Close()
		}
		s.hubAPI.Serve(ln)
	}()
	if root != nil {
		s.log.Info("serving releases to hubs", "dir", s.cfg.ReleasesDir, "url", "http://"+netip.AddrPortFrom(s.cfg.tunnelIP, hubAPIPort).String()+"/releases/")
	}
	return nil
}

func (s *Server) releasesHandler(root *os.Root) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name, ok := strings.CutPrefix(r.URL.Path, "/releases/")
		if !ok || !releaseName.MatchString(name) || path.Clean(name) != name {
			http.NotFound(w, r)
			return
		}
		f, err := root.Open(name)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				s.repeatLog.Warn("releases: cannot read a file", logger.Err, err)
			}
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			http.NotFound(w, r)
			return
		}
		if !strings.HasPrefix(name, "manifest") {
			// Artifact downloads are rare and worth a line; daily manifest
			// checks from every hub are not.
			s.log.Info("hub fetches a release", logger.Hub, s.hubAt(r.RemoteAddr), "file", name, "bytes", fi.Size())
		}
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, name, fi.ModTime(), f)
	})
}

// hubAt names the hub with a tunnel address, for the log.
func (s *Server) hubAt(remote string) string {
	host, _, _ := net.SplitHostPort(remote)
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return remote
	}
	if h := s.hubs.ip(ip.Unmap()); h != nil {
		return h.Name
	}
	return ip.String()
}
