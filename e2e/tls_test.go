package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// The agent over TLS, for networks that allow only HTTPS: directly to the
// relay's port 443 (shared with browsers), through an HTTP CONNECT proxy,
// through a proxy that inspects TLS and re-signs it with its own CA, and
// found by transport "auto" when the agent port is closed. Each time the
// hub's WebUI loads through the relay and the agent's status shows the
// route.

// tlsPort is the relay's public port 443 as the agent dials it.
func (s *hubSetup) tlsPort() string { return fmt.Sprintf("127.0.0.1:%d", 443+s.offset) }

// connectedOver waits for the tunnel and checks the status API's route and
// that the WebUI loads through the relay over it.
func (s *hubSetup) connectedOver(route string) {
	s.t.Helper()
	st := s.waitConnected(20 * time.Second)
	if st.Route != route {
		s.t.Errorf("status route %q, want %q", st.Route, route)
	}
	s.mustGetWebUI()
	if !strings.Contains(s.relay.logText(), `msg="hub connected" hub=demo remote=127.0.0.1:`) ||
		!strings.Contains(s.relay.logText(), " transport=tls ") {
		s.t.Errorf("the relay did not log the hub as connected over tls")
	}
}

// TestTLSTransport: transport "tls" to the relay's port 443.
func TestTLSTransport(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{})
	s.startAgent(agentOpts{transport: "tls", relayTLS: s.tlsPort()})
	s.connectedOver("tls")
	out := run(t, bin.hubtunnel, "status", "--config", filepath.Join(s.dir, "hub.toml"))
	if want := "relay:           " + s.tlsPort() + " over TLS (hubrelay/"; !strings.Contains(out, want) {
		t.Errorf("hubtunnel status does not say %q:\n%s", want, out)
	}
}

// TestTLSAutoFallback: transport "auto" with the agent port closed finds
// TLS on port 443.
func TestTLSAutoFallback(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{})
	closed := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nothing listens there
	s.startAgent(agentOpts{transport: "auto", relay: closed, relayTLS: s.tlsPort()})
	s.connectedOver("tls")
}

// TestTLSThroughTinyproxy: transport "tls" through an HTTP CONNECT proxy
// that lets only port 443 out.
func TestTLSThroughTinyproxy(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{})
	proxy, logFile := startTinyproxy(t, 443+s.offset)
	s.startAgent(agentOpts{transport: "tls", relayTLS: s.tlsPort(), proxy: "http://" + proxy})
	s.connectedOver("tls via proxy")
	want := "CONNECT " + s.tlsPort()
	poll.Until(t, 5*time.Second, "tinyproxy's log to show "+want, func() bool {
		return strings.Contains(readFileString(logFile), want)
	})
}

// TestTLSThroughInspectingSquid: transport "tls" through squid with SSL
// bump, which ends the agent's TLS with a certificate its own CA signed
// and makes its own TLS connection to the relay, offering only HTTP: the
// agent does not check the certificate (its pinned WireGuard key
// authenticates the relay) and asks for the agent protocol with an HTTP
// upgrade, which squid passes on.
func TestTLSThroughInspectingSquid(t *testing.T) {
	t.Parallel()
	squid := need(t, "as the TLS-inspecting proxy", "squid", "/usr/sbin/squid")
	certgen := "/usr/lib/squid/security_file_certgen"
	if _, err := os.Stat(certgen); err != nil {
		missing(t, "%s is missing (package squid-openssl)", certgen)
	}
	needRoot(t, "to run squid as its own user")
	proxyUser, err := user.Lookup("proxy")
	if err != nil {
		missing(t, "no user proxy for squid: %v", err)
	}
	uid, _ := strconv.Atoi(proxyUser.Uid)
	gid, _ := strconv.Atoi(proxyUser.Gid)

	s := newHub(t, setupOpts{})
	// squid runs as user proxy: its folder must be its own.
	dir, err := os.MkdirTemp("", "hubtunnel-squid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	caCert, caKey := writeCA(t, dir)
	db := filepath.Join(dir, "ssl_db")
	run(t, certgen, "-c", "-s", db, "-M", "4MB")
	port := freePort(t)
	conf := filepath.Join(dir, "squid.conf")
	writeFile(t, conf, fmt.Sprintf(`http_port 127.0.0.1:%d ssl-bump tls-cert=%s tls-key=%s generate-host-certificates=on dynamic_cert_mem_cache_size=4MB
sslcrtd_program %s -s %s -M 4MB
sslcrtd_children 2 startup=1 idle=1
ssl_bump bump all
tls_outgoing_options flags=DONT_VERIFY_PEER
sslproxy_cert_error allow all
http_upgrade_request_protocols %s allow all
http_access allow all
cache deny all
visible_hostname hubtunnel-e2e
pid_filename %s
cache_log %s
access_log stdio:%s
coredump_dir %s
shutdown_lifetime 0 seconds
`, port, caCert, caKey, certgen, db, "hubtunnel/1",
		filepath.Join(dir, "squid.pid"), filepath.Join(dir, "cache.log"), filepath.Join(dir, "access.log"), dir))
	if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	}); err != nil {
		t.Fatal(err)
	}
	sq := start(t, dir, "squid", squid, "-N", "-f", conf)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- squid cache.log ---\n%s\n--- access.log ---\n%s", readFileString(filepath.Join(dir, "cache.log")), readFileString(filepath.Join(dir, "access.log")))
		}
	})
	proxy := fmt.Sprintf("127.0.0.1:%d", port)
	waitListening(t, sq, proxy)

	s.startAgent(agentOpts{transport: "tls", relayTLS: s.tlsPort(), proxy: "http://" + proxy})
	s.connectedOver("tls via proxy")
	// squid did inspect: it logs the agent's request inside the TLS (the
	// upgrade, 101) once that ends.
	s.agent.stop(t)
	want := "/101 "
	poll.Until(t, 10*time.Second, "squid's access.log to show the agent's upgrade", func() bool {
		log := readFileString(filepath.Join(dir, "access.log"))
		return strings.Contains(log, want) && strings.Contains(log, "GET https://"+s.tlsPort()+"/.hubtunnel/agent")
	})
}

// writeCA makes a CA such as a company proxy re-signs with, and returns
// its certificate and key files.
func writeCA(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "Inspecting Proxy CA (hubtunnel e2e)"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})))
	return certFile, keyFile
}
