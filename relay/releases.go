package relay

import (
	"errors"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path"
	"regexp"
	"strings"
	"time"
)

// releasePort is where hubs fetch releases inside the tunnel. Agents admit
// replies from the relay's tunnel address on this port (firewall.Services).
const releasePort = 80

// releaseName is what a release folder holds: flat, plain file names
// (manifest.json, manifest-0.2.0.json, hubtunnel-0.2.0-linux-armv7.gz).
var releaseName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

// serveReleases serves ReleasesDir to hubs through the tunnel. Only the
// relay's own netstack listens here: nothing of it is public.
func (s *Server) serveReleases() error {
	root, err := os.OpenRoot(s.cfg.ReleasesDir)
	if err != nil {
		return err
	}
	ln, err := s.stack.ListenTCP(releasePort)
	if err != nil {
		root.Close()
		return err
	}
	s.releases = &http.Server{
		Handler:           s.releasesHandler(root),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer root.Close()
		s.releases.Serve(ln)
	}()
	s.logf("relay: serving releases from %s to hubs at http://%s/releases/", s.cfg.ReleasesDir, netip.AddrPortFrom(s.cfg.tunnelIP, releasePort))
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
				s.logf("relay: releases: %v", err)
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
			s.logf("relay: hub %s fetches %s (%d bytes)", s.hubAt(r.RemoteAddr), name, fi.Size())
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
