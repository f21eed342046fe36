package relay

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/atomicfile"
)

// certStore holds the certificate the TLS ports serve. The TLS configs'
// GetCertificate reads it on every handshake, so a renewed or reloaded
// certificate reaches new connections at once while connections already
// open keep the one they began with.
type certStore struct {
	cur atomic.Pointer[tls.Certificate] // Leaf always set
}

// get is tls.Config.GetCertificate.
func (c *certStore) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if cert := c.cur.Load(); cert != nil {
		return cert, nil
	}
	return nil, errors.New("relay: no certificate yet")
}

func (c *certStore) set(cert *tls.Certificate) { c.cur.Store(cert) }

// leaf is the certificate served now, nil before the first.
func (c *certStore) leaf() *x509.Certificate {
	if cert := c.cur.Load(); cert != nil {
		return cert.Leaf
	}
	return nil
}

// parsePair makes a served certificate of a PEM chain and key.
func parsePair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &cert, nil
}

// loadPair reads a certificate and its key from two PEM files.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	cert, err := parsePair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s with %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// keptPair reads a pair the relay keeps in cert_dir (name.crt, name.key);
// a missing pair is (nil, nil).
func keptPair(dir, name string) (*tls.Certificate, error) {
	cert, err := loadPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return cert, err
}

// keepPair writes name.crt and name.key into dir (0600 each, the folder
// 0700), each atomically: the key first, so a crash between the two leaves
// a pair that fails to match and is made again, never a certificate
// without its key.
func keepPair(dir, name string, certPEM, keyPEM []byte) error {
	if err := ensureDir(dir); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, name+".key"), keyPEM, 0o600); err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, name+".crt"), certPEM, 0o600)
}

// ensureDir makes dir (0700) and tightens an existing one to 0700.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// covers reports whether leaf is valid for every name in names.
func covers(leaf *x509.Certificate, names []string) bool {
	for _, n := range names {
		if !slices.Contains(leaf.DNSNames, n) {
			return false
		}
	}
	return true
}

// certNames are the names the relay's certificate is for: the hubs'
// (*.<domain>), the bare domain, and public_host when the wildcard does
// not cover it.
func certNames(domain, publicHost string) []string {
	names := []string{"*." + domain, domain}
	if publicHost != "" && publicHost != domain && !coveredByWildcard(publicHost, domain) {
		names = append(names, publicHost)
	}
	return names
}

// coveredByWildcard reports whether *.<domain> covers name (one label more).
func coveredByWildcard(name, domain string) bool {
	rest, ok := strings.CutSuffix(name, "."+domain)
	return ok && rest != "" && !strings.Contains(rest, ".")
}

// pemBlock encodes one PEM block.
func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// renewDue is when a certificate valid until notAfter should be renewed:
// before (or, for a certificate whose whole life is shorter than three
// times before, a third of its life) ahead of its end.
func renewDue(leaf *x509.Certificate, before time.Duration) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	if life/3 < before {
		before = life / 3
	}
	return leaf.NotAfter.Add(-before)
}
