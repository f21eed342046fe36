package relay

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/go-acme/lego/v5/lego"
	"github.com/go-acme/lego/v5/providers/dns/dnsupdate"
	"github.com/go-acme/lego/v5/registration"
	"github.com/hubtunnel/hubtunnel/internal/atomicfile"
	"github.com/hubtunnel/hubtunnel/internal/logger"
)

// ACME (lego, DNS-01 through RFC 2136 dynamic DNS): one certificate for
// *.<domain>, <domain> and public_host, so Certificate Transparency logs
// show the relay's domain and never a hub's name. The account and the
// certificate are kept under cert_dir/acme/<CA host>/, so a restart serves
// the kept certificate and orders nothing; acmeLoop renews it renew_before
// its end (at most half its life), and keeps serving the old one, retrying
// with backoff and logging why, while the CA or the DNS server fail.

// acmeBackoff bounds the wait after a failed order: it doubles from the
// first to the last.
var acmeBackoff = [2]time.Duration{time.Minute, time.Hour}

// acmeState is the relay's ACME client state between orders.
type acmeState struct {
	dir         string       // cert_dir/acme/<CA host>
	renewBefore atomic.Int64 // a time.Duration; Reload may change it
	leaf        atomic.Pointer[x509.Certificate]
	kick        chan struct{} // Reload: look at the renewal time again
	errLog      *slog.Logger  // each message at most every 10 minutes
}

func newACMEState(s *Server) *acmeState {
	host := "ca"
	if u, err := url.Parse(s.cfg.ACME.CA); err == nil && u.Host != "" {
		host = strings.ReplaceAll(u.Host, ":", "_")
	}
	a := &acmeState{dir: filepath.Join(s.cfg.CertDir, "acme", host), kick: make(chan struct{}, 1), errLog: logger.Limited(s.log, 10*time.Minute)}
	a.renewBefore.Store(int64(s.cfg.ACME.renewBefore))
	return a
}

// loadACMECert serves the certificate kept from an earlier order, or the
// self-signed one until the first order succeeds.
func (s *Server) loadACMECert() error {
	s.acme = newACMEState(s)
	cert, err := keptPair(s.acme.dir, s.cfg.Domain)
	if err != nil {
		s.log.Warn("acme: the kept certificate is unusable; ordering a new one", logger.Err, err)
	}
	if cert != nil && covers(cert.Leaf, certNames(s.cfg.Domain, s.cfg.PublicHost)) && s.now().Before(cert.Leaf.NotAfter) {
		s.certs.set(cert)
		s.acme.leaf.Store(cert.Leaf)
		s.log.Info("acme: serving the kept certificate", "dir", s.acme.dir,
			"valid_until", cert.Leaf.NotAfter.UTC().Format(time.RFC3339), "renew_from", renewDue(cert.Leaf, s.cfg.ACME.renewBefore).UTC().Format(time.RFC3339))
		return nil
	}
	s.log.Info("acme: no certificate yet; serving a self-signed one until the CA issues one", "ca", s.cfg.ACME.CA)
	return s.keepSelfSigned()
}

// acmeLoop orders a certificate when none is kept or the kept one is due,
// until the relay closes.
func (s *Server) acmeLoop() {
	defer s.wg.Done()
	a := s.acme
	failures := 0
	for {
		var wait time.Duration
		if leaf := a.leaf.Load(); leaf != nil {
			wait = renewDue(leaf, time.Duration(a.renewBefore.Load())).Sub(s.now())
		}
		if failures > 0 {
			wait = min(acmeBackoff[0]<<min(failures-1, 10), acmeBackoff[1])
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-s.closing:
			t.Stop()
			return
		case <-a.kick:
			t.Stop()
			continue
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		go func() {
			select {
			case <-s.closing:
			case <-ctx.Done():
			}
			cancel()
		}()
		err := s.orderCert(ctx)
		cancel()
		if err != nil {
			failures++
			next := min(acmeBackoff[0]<<min(failures-1, 10), acmeBackoff[1])
			a.errLog.Warn("acme: could not get a certificate; still serving the current one", "ca", s.cfg.ACME.CA, logger.Err, err, "retry_in", next.String())
			continue
		}
		failures = 0
	}
}

// orderCert registers the account if needed, orders a certificate for the
// relay's names over DNS-01, keeps it and serves it.
func (s *Server) orderCert(ctx context.Context) error {
	a, ac := s.acme, s.cfg.ACME
	user, err := loadACMEUser(a.dir, ac.Email)
	if err != nil {
		return err
	}
	cfg := lego.NewConfig(user)
	cfg.CADirURL = ac.CA
	cfg.UserAgent = "hubrelay/" + s.version
	if ac.caRoots != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: ac.caRoots, MinVersion: tls.VersionTLS12}
		cfg.HTTPClient = &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	}
	client, err := lego.NewClient(cfg)
	if err != nil {
		return fmt.Errorf("the CA's directory %s: %w", ac.CA, err)
	}
	if user.reg == nil {
		reg, err := client.Registration.Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true})
		if err != nil {
			return fmt.Errorf("registering an account: %w", err)
		}
		user.reg = reg
		data, _ := json.MarshalIndent(reg, "", "  ")
		if err := atomicfile.WriteFile(filepath.Join(a.dir, "account.json"), data, 0o600); err != nil {
			return err
		}
		s.log.Info("acme: registered an account", "ca", ac.CA)
	}
	r := ac.RFC2136
	provider, err := dnsupdate.NewDNSProviderConfig(&dnsupdate.Config{
		Nameserver:         r.Server,
		Zones:              r.zones(),
		TSIGKey:            r.TSIGKey,
		TSIGSecret:         r.tsigSecret,
		TSIGAlgorithm:      r.TSIGAlgorithm,
		DNSTimeout:         10 * time.Second,
		TTL:                60,
		PropagationTimeout: 2 * time.Minute,
		PollingInterval:    2 * time.Second,
		// The wildcard's and the domain's challenges share one name:
		// the provider sets them one after the other.
		SequenceInterval: 2 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("acme.rfc2136: %w", err)
	}
	// Propagation is checked at the RFC 2136 server itself, which is
	// authoritative for the zone.
	dns01.SetDefaultClient(dns01.NewClient(&dns01.Options{RecursiveNameservers: []string{r.Server}, Timeout: 10 * time.Second}))
	if err := client.Challenge.SetDNS01Provider(provider, dns01.DisableAuthoritativeNssPropagationRequirement()); err != nil {
		return err
	}
	names := certNames(s.cfg.Domain, s.cfg.PublicHost)
	res, err := client.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: names, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil {
		return err
	}
	cert, err := parsePair(res.Certificate, res.PrivateKey)
	if err != nil {
		return fmt.Errorf("the CA's certificate: %w", err)
	}
	if err := keepPair(a.dir, s.cfg.Domain, res.Certificate, res.PrivateKey); err != nil {
		return fmt.Errorf("keeping the certificate: %w", err)
	}
	s.certs.set(cert)
	a.leaf.Store(cert.Leaf)
	s.log.Info("acme: new certificate; serving it to new connections",
		"names", strings.Join(names, ","), "ca", ac.CA, "valid_until", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// acmeUser is the ACME account: its key (account.key) and registration
// (account.json), kept in the state folder.
type acmeUser struct {
	email string
	key   crypto.Signer
	reg   *acme.ExtendedAccount
}

func (u *acmeUser) GetEmail() string                       { return u.email }
func (u *acmeUser) GetRegistration() *acme.ExtendedAccount { return u.reg }
func (u *acmeUser) GetPrivateKey() crypto.Signer           { return u.key }

// loadACMEUser reads the account kept in dir, making its key on first use.
func loadACMEUser(dir, email string) (*acmeUser, error) {
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	u := &acmeUser{email: email}
	keyFile := filepath.Join(dir, "account.key")
	data, err := os.ReadFile(keyFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		if err := atomicfile.WriteFile(keyFile, pemBlock("PRIVATE KEY", der), 0o600); err != nil {
			return nil, err
		}
		u.key = k
		os.Remove(filepath.Join(dir, "account.json")) // registered with another key
		return u, nil
	case err != nil:
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s: not a PEM key", keyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", keyFile)
	}
	u.key = signer
	if data, err := os.ReadFile(filepath.Join(dir, "account.json")); err == nil {
		var reg acme.ExtendedAccount
		if json.Unmarshal(data, &reg) == nil && reg.Location != "" {
			u.reg = &reg
		}
	}
	return u, nil
}
