package relay

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hubtunnel/hubtunnel/portal"
	"github.com/hubtunnel/hubtunnel/store"
)

// portals are the portal host's handlers of its WebUI ports (portal
// package): one over TLS (443), and one over plain HTTP for a relay with
// plaintext_ports (80); they differ in cookie and origin.
type portals struct {
	tls, plain http.Handler
}

func (p portals) handler(secure bool) http.Handler {
	if secure {
		return p.tls
	}
	return p.plain
}

// newPortals makes the portal's handlers, wired to this relay: its store
// and clock, its hubs' online state, the hand-off to hub hosts, the
// enrollment codes owners make and the audit writer.
func (s *Server) newPortals() (portals, error) {
	mk := func(secure bool) (http.Handler, error) {
		return portal.New(portal.Config{
			Store:      s.db,
			Domain:     s.cfg.Domain,
			PublicHost: s.cfg.PublicHost,
			HubURL:     func(hub string) string { return s.hubOrigin(hub, secure) + "/" },
			PortOffset: s.cfg.PortOffset,
			Secure:     secure,
			SessionTTL: s.cfg.sessionTTL,
			Online: func(hub string) bool {
				h := s.hubs.name(hub)
				return h != nil && s.hubs.online(h)
			},
			Handoff: func(secret, hubHost string) string {
				host := s.classify(hubHost)
				if host.kind != hostHub {
					return ""
				}
				return s.handoffs.issue(secret, host.hub, s.now())
			},
			HandoffURL: func(hubHost, code, next string) string {
				host := s.classify(hubHost)
				return s.hubOrigin(host.hub, secure) + relayPath + "auth?code=" + url.QueryEscape(code) + "&next=" + url.QueryEscape(next)
			},
			// An owner's code for a hub they will own; the portal shows
			// it once and keeps it nowhere.
			EnrollCode: func(ctx context.Context, hub, owner string) (string, time.Time, error) {
				code, rec, err := s.NewEnrollCode(ctx, CodeSpec{Hub: hub, Owner: owner, CreatedBy: owner})
				if err != nil {
					return "", time.Time{}, err
				}
				return code.String(), rec.Expires, nil
			},
			Audit: func(e store.Event) {
				s.audit.add(e)
				if e.Kind == store.KindLogout || e.Kind == store.KindRevoke {
					s.refresh()
				}
			},
			Now:  s.now,
			Logf: s.logf,
		})
	}
	var p portals
	var err error
	if p.tls, err = mk(true); err != nil {
		return portals{}, fmt.Errorf("relay: portal: %w", err)
	}
	if p.plain, err = mk(false); err != nil {
		return portals{}, fmt.Errorf("relay: portal: %w", err)
	}
	return p, nil
}

// hubOrigin is the origin of a hub's WebUI: https://NAME.<domain> on 443
// plus the port offset, or http:// on 80 plus the offset.
func (s *Server) hubOrigin(hub string, secure bool) string {
	scheme, port := "http", 80
	if secure {
		scheme, port = "https", 443
	}
	host := hub + "." + s.cfg.Domain
	if port += s.cfg.PortOffset; port != 443 && port != 80 {
		host += ":" + strconv.Itoa(port)
	}
	return scheme + "://" + host
}
