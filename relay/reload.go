package relay

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/store"
)

// Reload (SIGHUP) reads the config file again and applies what can change
// without closing a listener or a connection:
//
//   - the limit_* keys, for the connections and requests that come next
//     (setLimits: a lowered limit closes nothing open beyond it);
//   - the [[hub]] list, imported into the store as at start; hubs the
//     previous list named and this one does not are removed from the
//     store. The relay follows the store (syncHubs), so a hub added can
//     connect and a hub removed is cut off at once;
//   - tls_cert_file, tls_key_file and acme.renew_before, and the
//     certificate itself (tls.go).
//
// Every other key (listen addresses, domain, port_offset, private_key_file,
// store, plaintext_ports, which opens or closes public ports, …) keeps its
// old value until a restart and is named in a log line. A file that does
// not parse or validate changes nothing.

// reloadable are the keys Reload applies, besides the certificate's.
var reloadable = []string{
	"limit_conns_per_address", "limit_requests_per_second", "limit_public_conns",
	"limit_agent_conns", "limit_agent_prehello_per_address", "limit_sessions_per_hub",
	"hub",
}

// Reload is SIGHUP: it applies the config file read again (see above) and
// reads the certificate files (tls_cert_file and tls_key_file, e.g.
// renewed by certbot) or the kept certificate. Connections already open
// are not touched; new ones get the new certificate and limits. On error
// the relay goes on as before.
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.cfg.path != "" {
		cfg, err := LoadConfig(s.cfg.path)
		if err != nil {
			return fmt.Errorf("relay: reload: %w; nothing changed", err)
		}
		applied, restart, err := s.applyConfig(cfg)
		if len(applied) > 0 {
			s.log.Info("reload: applied", "keys", strings.Join(applied, ","), "config", s.cfg.path)
		}
		if len(restart) > 0 {
			s.log.Warn("reload: keys changed that need a restart; the relay goes on with the old values", "keys", strings.Join(restart, ","), "config", s.cfg.path)
		}
		if err != nil {
			return err
		}
	}
	switch {
	case s.cfg.TLSCertFile != "":
		return s.loadCertFiles()
	case s.acme != nil:
		select {
		case s.acme.kick <- struct{}{}:
		default:
		}
		return nil
	default:
		return s.keepSelfSigned()
	}
}

// applyConfig takes what can change without a restart from a config read
// again. It returns the keys it applied and those that changed but need a
// restart. The [[hub]] list goes first: when the store refuses it, nothing
// else is applied.
func (s *Server) applyConfig(n *Config) (applied, restart []string, err error) {
	old := s.cfg
	if !reflect.DeepEqual(old.Hubs, n.Hubs) && s.db != nil { // nil: not started
		if err := s.reloadHubs(old.Hubs, n.Hubs); err != nil {
			return nil, nil, fmt.Errorf("relay: reload: [[hub]]: %w; the other keys are not applied either", err)
		}
		s.cfg.Hubs = n.Hubs
		applied = append(applied, "hub")
	}
	limits := func(c *Config) [6]float64 {
		return [6]float64{float64(c.LimitConnsPerAddress), c.LimitRequestsPerSecond, float64(c.LimitPublicConns),
			float64(c.LimitAgentConns), float64(c.LimitAgentPreHelloPerAddress), float64(c.LimitSessionsPerHub)}
	}
	if lo, ln := limits(&old), limits(n); lo != ln {
		s.setLimits(n)
		for i, key := range reloadable[:6] {
			if lo[i] != ln[i] {
				applied = append(applied, key)
			}
		}
		s.cfg.LimitConnsPerAddress, s.cfg.LimitRequestsPerSecond = n.LimitConnsPerAddress, n.LimitRequestsPerSecond
		s.cfg.LimitPublicConns, s.cfg.LimitAgentConns = n.LimitPublicConns, n.LimitAgentConns
		s.cfg.LimitAgentPreHelloPerAddress, s.cfg.LimitSessionsPerHub = n.LimitAgentPreHelloPerAddress, n.LimitSessionsPerHub
	}
	if old.TLSCertFile != "" && n.TLSCertFile != "" {
		s.cfg.TLSCertFile, s.cfg.TLSKeyFile = n.TLSCertFile, n.TLSKeyFile
		old.TLSCertFile, old.TLSKeyFile = n.TLSCertFile, n.TLSKeyFile
	}
	if old.ACME != nil && n.ACME != nil {
		s.acme.renewBefore.Store(int64(n.ACME.renewBefore))
		a, b := *old.ACME, *n.ACME
		a.RenewBefore, a.renewBefore, a.caRoots, b.caRoots = b.RenewBefore, b.renewBefore, nil, nil
		if reflect.DeepEqual(a, b) {
			old.ACME = n.ACME
		}
	}
	ov, nv := reflect.ValueOf(old), reflect.ValueOf(*n)
	for i := range ov.NumField() {
		f := ov.Type().Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if !f.IsExported() || tag == "" || tag == "-" || slices.Contains(reloadable, tag) {
			continue
		}
		if !reflect.DeepEqual(ov.Field(i).Interface(), nv.Field(i).Interface()) {
			restart = append(restart, tag)
		}
	}
	return applied, restart, nil
}

// reloadHubs makes the store follow a changed [[hub]] list: hubs only in
// was are removed (with their grants and tokens, as by hubrelay hub
// remove), then the list is imported as at start. The relay serves the
// store's change at once (refresh). A hub renamed in the file is one
// removed and one added: hubrelay hub rename keeps its grants.
func (s *Server) reloadHubs(was, now []HubConfig) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, h := range was {
		if slices.ContainsFunc(now, func(n HubConfig) bool { return n.Name == h.Name }) {
			continue
		}
		switch err := s.db.RemoveHub(ctx, h.Name); {
		case errors.Is(err, store.ErrNotFound): // removed or renamed already
		case err != nil:
			return fmt.Errorf("removing hub %q: %w", h.Name, err)
		default:
			s.log.Info("reload: removed the hub the config no longer lists, with its grants and tokens", logger.Hub, h.Name)
			s.audit.add(store.Event{Kind: store.KindRevoke, Hub: h.Name, Outcome: "ok", Detail: "hub removed from the config's [[hub]] list (reload), with its grants and tokens"})
		}
	}
	if err := s.importHubs(ctx, now); err != nil {
		return err
	}
	s.refresh()
	return nil
}

// importHubs imports the config's [[hub]] list into the store, at start
// (openStore) and at Reload: new hubs are added, a changed key or tunnel
// address is updated, hubs only in the store stay, and an owner the list
// names is set.
func (s *Server) importHubs(ctx context.Context, hubs []HubConfig) error {
	db := s.db
	specs := make([]store.HubSpec, len(hubs))
	for i, h := range hubs {
		specs[i] = store.HubSpec{Name: h.Name, PublicKey: h.key.String(), TunnelIP: h.ip.String()}
	}
	r, err := db.ImportHubs(ctx, specs)
	if err != nil {
		return fmt.Errorf("relay: store: %w", err)
	}
	s.log.Info("store: imported the config's hubs", "store", db.Where(), "added", hubList(r.Added), "updated", hubList(r.Updated), "unchanged", len(r.Unchanged))
	for _, h := range hubs {
		if h.Owner == "" {
			continue
		}
		cur, err := db.HubByName(ctx, h.Name)
		if err != nil {
			return fmt.Errorf("relay: store: %w", err)
		}
		if cur.Owner == h.Owner {
			continue
		}
		switch err := db.SetHubOwner(ctx, h.Name, h.Owner); {
		case errors.Is(err, store.ErrNotFound):
			s.log.Warn("the config names a hub owner who has no account yet (hubrelay user add); the hub keeps its owner until then", logger.Hub, h.Name, logger.User, h.Owner)
		case err != nil:
			return fmt.Errorf("relay: store: %w", err)
		default:
			s.log.Info("hub owner set from the config", logger.Hub, h.Name, logger.User, h.Owner)
		}
	}
	return nil
}
