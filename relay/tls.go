package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
)

// The certificate the TLS ports serve comes from one of three places:
//
//   - tls_cert_file and tls_key_file: read at start and again at every
//     Reload (SIGHUP), e.g. after an external certbot renewed them;
//   - [acme]: a wildcard certificate from an ACME CA over DNS-01
//     (acme.go), kept in cert_dir and renewed in the background;
//   - neither: a self-signed certificate, made once, kept in cert_dir and
//     made anew when it nears its end.
//
// All three go through certStore, which the TLS configs ask on every
// handshake: a new certificate reaches new connections, and connections
// already open are not touched.

const (
	// selfSignedName is the self-signed pair's file name in cert_dir.
	selfSignedName = "self-signed"
	// selfSignedLife is how long a self-signed certificate is valid, and
	// selfSignedRenew how long before its end it is made anew.
	selfSignedLife  = 365 * 24 * time.Hour
	selfSignedRenew = 30 * 24 * time.Hour
)

// tlsConfig loads the first certificate and makes the TLS config that
// serves whatever certStore holds.
func (s *Server) tlsConfig() (*tls.Config, error) {
	switch {
	case s.cfg.TLSCertFile != "":
		if err := s.loadCertFiles(); err != nil {
			return nil, err
		}
	case s.cfg.ACME != nil:
		if err := s.loadACMECert(); err != nil {
			return nil, err
		}
	default:
		if err := s.keepSelfSigned(); err != nil {
			return nil, err
		}
	}
	return &tls.Config{GetCertificate: s.certs.get, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}, nil
}

// loadCertFiles (re)reads tls_cert_file and tls_key_file; on error the
// certificate served so far stays.
func (s *Server) loadCertFiles() error {
	cert, err := loadPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
	if err != nil {
		return fmt.Errorf("relay: tls_cert_file: %w", err)
	}
	s.certs.set(cert)
	s.log.Info("serving the certificate of tls_cert_file", "file", s.cfg.TLSCertFile, "name", cert.Leaf.Subject.CommonName, "valid_until", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// keepSelfSigned serves the self-signed certificate kept in cert_dir,
// making (and keeping) a new one when there is none, it does not cover
// the relay's names, or it ends within selfSignedRenew.
func (s *Server) keepSelfSigned() error {
	names := certNames(s.cfg.Domain, s.cfg.PublicHost)
	cert, err := keptPair(s.cfg.CertDir, selfSignedName)
	if err != nil {
		s.log.Warn("the kept self-signed certificate is unusable; making a new one", "dir", s.cfg.CertDir, logger.Err, err)
	}
	if cert != nil && covers(cert.Leaf, names) && s.now().Before(cert.Leaf.NotAfter.Add(-selfSignedRenew)) {
		if cur := s.certs.leaf(); cur == nil || !cur.Equal(cert.Leaf) {
			s.certs.set(cert)
			s.log.Info("no tls_cert_file: serving the kept self-signed certificate (browsers warn about it)", "dir", s.cfg.CertDir, "name", names[0])
		}
		return nil
	}
	certPEM, keyPEM, err := selfSigned(names, s.now())
	if err == nil {
		err = keepPair(s.cfg.CertDir, selfSignedName, certPEM, keyPEM)
	}
	if err == nil {
		cert, err = parsePair(certPEM, keyPEM)
	}
	if err != nil {
		return fmt.Errorf("relay: self-signed certificate in cert_dir %s: %w", s.cfg.CertDir, err)
	}
	s.certs.set(cert)
	s.log.Info("no tls_cert_file: made a self-signed certificate (browsers warn about it)", "name", names[0], "dir", s.cfg.CertDir)
	return nil
}

// selfSigned makes a certificate and key (PEM) for names, the first of
// which is its common name.
func selfSigned(names []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(selfSignedLife),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", keyDER), nil
}

// renewSelfSigned makes the self-signed certificate anew when it nears
// its end (every 12 hours, without [acme] or tls_cert_file).
func (s *Server) renewSelfSigned() {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if err := s.keepSelfSigned(); err != nil {
		s.log.Warn("reload: the certificate failed; still serving the current one", logger.Err, err)
	}
}
