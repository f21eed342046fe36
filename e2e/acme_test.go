package e2e

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// pebbleDir is where scripts/deps.sh builds Pebble (pinned) and keeps its
// test certificates: outside go.mod, in the user's cache.
func pebbleDir(t *testing.T) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, "hubtunnel", "pebble-v2.10.3")
	if _, err := os.Stat(filepath.Join(dir, "pebble")); err != nil {
		missing(t, "Pebble (the ACME test CA) is not built in %s: run scripts/deps.sh", dir)
	}
	return dir
}

// dnsServer is a real BIND authoritative for "localhost." that takes
// RFC 2136 updates signed with a TSIG key: the relay's ACME client sets its
// challenge records there, and Pebble reads them from it.
type dnsServer struct {
	addr       string // 127.0.0.1:port
	keyName    string
	secretFile string // the TSIG secret, as tsig_secret_file
}

func startBind(t *testing.T, dir string) dnsServer {
	t.Helper()
	named := need(t, "the ACME tests' DNS server", "named")
	dir = filepath.Join(dir, "bind")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	b64 := base64.StdEncoding.EncodeToString(secret)
	d := dnsServer{addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), keyName: "hubrelay-acme", secretFile: filepath.Join(dir, "tsig.key")}
	writeFile(t, d.secretFile, fmt.Sprintf("key %q {\n\talgorithm hmac-sha256;\n\tsecret %q;\n};\n", d.keyName, b64))
	_, port, _ := net.SplitHostPort(d.addr)
	writeFile(t, filepath.Join(dir, "named.conf"), fmt.Sprintf(`options {
	directory %[1]q;
	pid-file none;
	session-keyfile none;
	listen-on port %[2]s { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
};
controls { };
include %[3]q;
zone "localhost" {
	type primary;
	file %[4]q;
	allow-update { key %[5]q; };
};
`, dir, port, d.secretFile, filepath.Join(dir, "localhost.zone"), d.keyName))
	writeFile(t, filepath.Join(dir, "localhost.zone"), "$TTL 60\n@ IN SOA ns.localhost. admin.localhost. 1 60 60 600 60\n@ IN NS ns.localhost.\nns IN A 127.0.0.1\n@ IN A 127.0.0.1\n")
	p := start(t, dir, "named", named, "-g", "-4", "-c", filepath.Join(dir, "named.conf"))
	poll.Until(t, 20*time.Second, "BIND to load the zone", func() bool {
		if !p.alive() {
			t.Fatalf("named exited: %v\n%s", p.err, p.logText())
		}
		return strings.Contains(p.logText(), "running")
	})
	return d
}

// pebble is a running Pebble: the ACME directory, and its management API,
// which serves the root its certificates chain to.
type pebble struct {
	proc      *proc
	directory string
	mgmt      string
	minica    string // the PEM root of Pebble's own HTTPS, for acme.ca_root
}

// startPebble runs Pebble with certificates valid for validity, checking
// DNS-01 challenges at dns.
func startPebble(t *testing.T, dir string, dns dnsServer, validity time.Duration) *pebble {
	t.Helper()
	pd := pebbleDir(t)
	dir = filepath.Join(dir, "pebble")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	listen, mgmt := fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	writeFile(t, filepath.Join(dir, "pebble.json"), fmt.Sprintf(`{"pebble": {
  "listenAddress": %q, "managementListenAddress": %q,
  "certificate": %q, "privateKey": %q,
  "httpPort": %d, "tlsPort": %d, "ocspResponderURL": "", "externalAccountBindingRequired": false,
  "retryAfter": {"authz": 1, "order": 1}, "keyAlgorithm": "ecdsa",
  "profiles": {"default": {"description": "test", "validityPeriod": %d}}
}}`, listen, mgmt, filepath.Join(pd, "certs/localhost/cert.pem"), filepath.Join(pd, "certs/localhost/key.pem"),
		freePort(t), freePort(t), int(validity.Seconds())))
	p := &pebble{directory: "https://" + listen + "/dir", mgmt: mgmt, minica: filepath.Join(pd, "certs/pebble.minica.pem")}
	os.Setenv("PEBBLE_VA_NOSLEEP", "1")
	os.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Cleanup(func() { os.Unsetenv("PEBBLE_VA_NOSLEEP"); os.Unsetenv("PEBBLE_WFE_NONCEREJECT") })
	p.proc = start(t, dir, "pebble", filepath.Join(pd, "pebble"), "-config", filepath.Join(dir, "pebble.json"), "-dnsserver", dns.addr)
	poll.Until(t, 20*time.Second, "Pebble to serve its directory", func() bool {
		if !p.proc.alive() {
			t.Fatalf("pebble exited: %v", p.proc.err)
		}
		return strings.Contains(p.proc.logText(), "ACME directory available")
	})
	return p
}

// orders is how many certificates Pebble has issued, from its log.
func (p *pebble) orders() int { return strings.Count(p.proc.logText(), "Issued certificate serial") }

// root is the root Pebble's certificates chain to (new at every start).
func (p *pebble) root(t *testing.T) *x509.Certificate {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // Pebble's own minica HTTPS
	resp, err := c.Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("pebble /roots/0: no PEM: %.200q", data)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// servedChain is the certificate chain a TLS port of the relay serves for
// server name name.
func servedChain(t *testing.T, addr, name string) []*x509.Certificate {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates
}

// verifies reports whether chain is valid for name under root.
func verifies(chain []*x509.Certificate, root *x509.Certificate, name string) error {
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name})
	return err
}

// acmeConf is the relay config's [acme] table for Pebble and BIND.
func acmeConf(p *pebble, d dnsServer, extra string) string {
	return fmt.Sprintf("\n[acme]\nca = %q\nca_root = %q\nemail = \"ops@example.org\"\n%s\n[acme.rfc2136]\nserver = %q\ntsig_key = %q\ntsig_secret_file = %q\n",
		p.directory, p.minica, extra, d.addr, d.keyName, d.secretFile)
}

// restartRelayWith stops the setup's relay, edits its config (top: keys
// before every table; tail: tables after) and starts it again as name.
func (s *hubSetup) restartRelayWith(name, top, tail string) {
	s.t.Helper()
	s.relay.stop(s.t)
	writeFile(s.t, s.relayConf, top+readFileString(s.relayConf)+tail)
	s.relay = s.startRelay(name)
}

// TestACMEWildcard gets the relay's certificate from a real ACME CA
// (Pebble) over DNS-01 through a real RFC 2136 server (BIND): one wildcard
// for *.localhost, trusted under Pebble's root; a restart serves the kept
// certificate and orders nothing.
func TestACMEWildcard(t *testing.T) {
	s := newHub(t, setupOpts{})
	d := startBind(t, s.dir)
	p := startPebble(t, s.dir, d, 90*24*time.Hour)
	s.restartRelayWith("relay-acme", "", acmeConf(p, d, ""))
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", 4430+s.offset)

	root := p.root(t)
	poll.Until(t, 90*time.Second, "the relay to serve a certificate from Pebble", func() bool {
		return verifies(servedChain(t, tlsAddr, "demo.localhost"), root, "demo.localhost") == nil
	})
	chain := servedChain(t, tlsAddr, "localhost")
	for _, name := range []string{"demo.localhost", "any-hub.localhost", "localhost"} {
		if err := verifies(chain, root, name); err != nil {
			t.Errorf("the certificate is not valid for %s: %v (names %v)", name, err, chain[0].DNSNames)
		}
	}
	if got := strings.Join(chain[0].DNSNames, ","); strings.Contains(got, "demo") {
		t.Errorf("the certificate names a hub (%s): CT logs would publish it", got)
	}
	if n := p.orders(); n != 1 {
		t.Fatalf("Pebble issued %d certificates, want 1", n)
	}
	if strings.Contains(s.relay.logText(), readFileString(d.secretFile)[20:40]) {
		t.Errorf("the relay's log shows the TSIG secret")
	}
	serial := chain[0].SerialNumber
	browserTrusts(t, s, root)

	s.restartRelayWith("relay-acme2", "", "")
	if got := servedChain(t, tlsAddr, "demo.localhost")[0].SerialNumber; got.Cmp(serial) != 0 {
		t.Errorf("after a restart the relay serves serial %v, want the kept %v", got, serial)
	}
	if n := p.orders(); n != 1 {
		t.Errorf("after a restart Pebble issued %d certificates, want still 1 (the kept one reused)", n)
	}
	// Files 0600 in a 0700 folder.
	filepath.Walk(filepath.Join(s.dir, "certs"), func(path string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want no access for group and others", path, fi.Mode().Perm())
		}
		return nil
	})
}

// TestACMERenewal renews a short-lived certificate in the background while
// a download through the relay's TLS port is half done: the download
// finishes on its connection, new connections get the new certificate.
func TestACMERenewal(t *testing.T) {
	files := t.TempDir()
	want := writeRandomFile(t, files, "big.bin", 8<<20)
	s := newHub(t, setupOpts{filesDir: files})
	d := startBind(t, s.dir)
	p := startPebble(t, s.dir, d, 40*time.Second) // renewed after half its life
	s.restartRelayWith("relay-acme", "", acmeConf(p, d, ""))
	s.startAgent(agentOpts{})
	s.waitConnected(30 * time.Second)
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", 443+s.offset)
	root := p.root(t)
	poll.Until(t, 90*time.Second, "the relay to serve a certificate from Pebble", func() bool {
		return verifies(servedChain(t, tlsAddr, "demo.localhost"), root, "demo.localhost") == nil
	})
	first := servedChain(t, tlsAddr, "demo.localhost")[0].SerialNumber

	// The download: read its first part, hold it while the certificate is
	// renewed, then read the rest on the same connection.
	resp, err := s.client.Get(s.url("https", "demo", 443, "/files/big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 1<<16)
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(br, head); err != nil {
		t.Fatalf("first MiB of the download: %v", err)
	}
	poll.Until(t, 90*time.Second, "the relay to renew its certificate", func() bool {
		return servedChain(t, tlsAddr, "demo.localhost")[0].SerialNumber.Cmp(first) != 0
	})
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("the download broke during the renewal: %v", err)
	}
	sum := sha256.Sum256(append(head, rest...))
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("the download differs from the file (%d bytes)", len(head)+len(rest))
	}
	if resp.TLS.PeerCertificates[0].SerialNumber.Cmp(first) != 0 {
		t.Errorf("the download's connection changed certificates")
	}
}

// TestSIGHUPCertFile replaces tls_cert_file on disk, as an external
// certbot would, and sends SIGHUP: new connections get the new
// certificate, a connection opened before goes on.
func TestSIGHUPCertFile(t *testing.T) {
	s := newHub(t, setupOpts{})
	certFile, keyFile := filepath.Join(s.dir, "tls.crt"), filepath.Join(s.dir, "tls.key")
	writeSelfSigned(t, certFile, keyFile, "first")
	s.restartRelayWith("relay-files", fmt.Sprintf("tls_cert_file = %q\ntls_key_file = %q\n", certFile, keyFile), "")
	addr := fmt.Sprintf("127.0.0.1:%d", 443+s.offset)
	if cn := servedChain(t, addr, "localhost")[0].Subject.CommonName; cn != "first" {
		t.Fatalf("serving %q, want the file's certificate \"first\"", cn)
	}
	old, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	portalGet(t, old, 443+s.offset)

	writeSelfSigned(t, certFile, keyFile, "second")
	s.relay.cmd.Process.Signal(syscall.SIGHUP)
	poll.Until(t, 10*time.Second, "new connections to get the replaced certificate", func() bool {
		return servedChain(t, addr, "localhost")[0].Subject.CommonName == "second"
	})
	portalGet(t, old, 443+s.offset) // the old connection still serves requests
	if cn := old.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "first" {
		t.Errorf("the old connection's certificate is %q", cn)
	}
	if !s.relay.alive() {
		t.Fatal("the relay exited on SIGHUP")
	}
}

// portalGet sends one request for the portal's page on c and checks the
// answer.
func portalGet(t *testing.T, c net.Conn, port int) {
	t.Helper()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: localhost:%d\r\n\r\n", port)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("a request on the connection opened before SIGHUP: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		t.Fatalf("portal page: %s", resp.Status)
	}
}

// writeSelfSigned writes a certificate for localhost and *.localhost with
// common name cn, as tls_cert_file and tls_key_file.
func writeSelfSigned(t *testing.T, certFile, keyFile, cn string) {
	t.Helper()
	out, err := runErr("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
		"-subj", "/CN="+cn, "-addext", "subjectAltName=DNS:localhost,DNS:*.localhost", "-keyout", keyFile, "-out", certFile)
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
}

// browserTrusts: headless Chromium, with Pebble's root in its trust store
// (an NSS database in HOME/.pki/nssdb, as on a person's Linux desktop),
// loads the relay's portal with no certificate error; without the root it
// refuses it. That is what "browsers trust the relay" means once a real
// CA's root is the one in every browser. (The hubs' names are checked by
// Go's verifier above, not here: the test bed's domain is "localhost", and
// Chromium refuses a wildcard one label below a top-level name, *.localhost
// as it would *.com; under a relay's real domain, *.hubs.example.org, it
// is an ordinary wildcard.)
func browserTrusts(t *testing.T, s *hubSetup, root *x509.Certificate) {
	t.Helper()
	b := needBrowser(t)
	certutil := need(t, "to put Pebble's root into Chromium's trust store", "certutil")
	urls := fmt.Sprintf("https://localhost:%d/login", 443+s.offset)

	trusting, empty := t.TempDir(), t.TempDir()
	nssdb := filepath.Join(trusting, ".pki", "nssdb")
	if err := os.MkdirAll(nssdb, 0o700); err != nil {
		t.Fatal(err)
	}
	rootPEM := filepath.Join(trusting, "pebble-root.pem")
	writeFile(t, rootPEM, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})))
	run(t, certutil, "-d", "sql:"+nssdb, "-N", "--empty-password")
	run(t, certutil, "-d", "sql:"+nssdb, "-A", "-t", "C,,", "-n", "pebble-root", "-i", rootPEM)

	b.run(t, "acmetrust", map[string]string{"HOME": trusting, "HT_URLS": urls, "HT_EXPECT": "trusted"},
		"loaded https://localhost", "screenshot")
	b.run(t, "acmetrust", map[string]string{"HOME": empty, "HT_URLS": urls, "HT_EXPECT": "untrusted"},
		"refused https://localhost")
}
