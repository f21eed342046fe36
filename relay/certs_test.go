package relay

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSelfSignedCertificateIsMadeOnceAndKept: a relay without
// tls_cert_file and [acme] makes its self-signed certificate at its first
// start and serves the same one after a restart and a SIGHUP (a browser's
// exception for it stays good); only when it nears its end is it made anew,
// and the new one is kept in turn.
func TestSelfSignedCertificateIsMadeOnceAndKept(t *testing.T) {
	tr := startTestRelay(t, false, "a")
	cfg := tr.cfg
	first := tr.certs.leaf()
	if first == nil || !covers(first, []string{"*.localhost", "localhost"}) {
		t.Fatalf("the first certificate: %v", first)
	}
	for _, f := range []string{"self-signed.crt", "self-signed.key"} {
		fi, err := os.Stat(filepath.Join(cfg.CertDir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s in cert_dir: %v, %v; want it kept, mode 0600", f, fi, err)
		}
	}
	tr.Close()

	restart := func() *Server {
		t.Helper()
		s, err := New(cfg, "test", t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	s := restart()
	if got := s.certs.leaf(); !got.Equal(first) {
		t.Fatalf("after a restart the relay serves serial %v, want the kept %v", got.SerialNumber, first.SerialNumber)
	}
	if err := s.Reload(); err != nil || !s.certs.leaf().Equal(first) {
		t.Fatalf("after SIGHUP: %v, serial %v; want the kept %v", err, s.certs.leaf().SerialNumber, first.SerialNumber)
	}

	// 30 days before its end it is made anew, and that one is kept.
	tr.clock.advance(time.Until(first.NotAfter) - selfSignedRenew + time.Hour)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	renewed := s.certs.leaf()
	if renewed.Equal(first) || !renewed.NotAfter.After(first.NotAfter) {
		t.Fatalf("near its end (%v) the certificate was not made anew: serial %v until %v", first.NotAfter, renewed.SerialNumber, renewed.NotAfter)
	}
	s.Close()
	if got := restart().certs.leaf(); !got.Equal(renewed) {
		t.Fatalf("after the renewal and a restart the relay serves serial %v, want the renewed %v", got.SerialNumber, renewed.SerialNumber)
	}
}

// TestReloadConfig is SIGHUP with a changed config file: a new
// tls_cert_file is served at once, a changed limit takes effect, a changed
// key that needs a restart is named in the log and keeps its old value,
// and a file that no longer parses changes nothing.
func TestReloadConfig(t *testing.T) {
	dir := t.TempDir()
	pair := func(name string) (string, string) {
		certPEM, keyPEM, err := selfSigned([]string{"*.localhost", "localhost"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c, k := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		writeTestFile(t, c, certPEM)
		writeTestFile(t, k, keyPEM)
		return c, k
	}
	agentPort, err := ports.Free()
	if err != nil {
		t.Fatal(err)
	}
	offset, err := ports.Offset()
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "relay.toml")
	write := func(cert, key string, rate int, ttl string) {
		writeTestFile(t, conf, fmt.Appendf(nil, "domain = \"localhost\"\nagent_listen = \"127.0.0.1:%d\"\nagent_listen_udp = \"off\"\npublic_listen = \"127.0.0.1\"\nport_offset = %d\nprivate_key_file = \"relay.key\"\ntls_cert_file = %q\ntls_key_file = %q\nlimit_requests_per_second = %d\nsession_ttl = %q\n",
			agentPort, offset, cert, key, rate, ttl))
	}
	c1, k1 := pair("one")
	write(c1, k1, 20, "12h")
	cfg, err := LoadConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	var log logLines
	s, err := New(*cfg, "test", log.logf(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	first := s.certs.leaf()

	c2, k2 := pair("two")
	write(c2, k2, 5, "6h")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := s.certs.leaf(); got.Equal(first) {
		t.Errorf("after SIGHUP with a new tls_cert_file the relay still serves the old certificate")
	}
	if line := log.find("need a restart"); !strings.Contains(line, "session_ttl") || strings.Contains(line, "tls_cert_file") || strings.Contains(line, "limit_") {
		t.Errorf("the reload's log line: %q; want session_ttl named as needing a restart, not tls_cert_file nor a limit", line)
	}
	if s.cfg.SessionTTL != "12h" || s.cfg.TLSCertFile != c2 || s.limits.rates.Load().rate != 5 {
		t.Errorf("after the reload: session_ttl %s, tls_cert_file %s, requests a second %v; want 12h (a restart's key), %s and 5",
			s.cfg.SessionTTL, s.cfg.TLSCertFile, s.limits.rates.Load().rate, c2)
	}

	served := s.certs.leaf()
	writeTestFile(t, conf, []byte("domain = \"localhost\"\ntls_cert_file = \n"))
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "nothing changed") {
		t.Errorf("SIGHUP with a broken config: %v; want an error saying nothing changed", err)
	}
	if !s.certs.leaf().Equal(served) || s.limits.rates.Load().rate != 5 {
		t.Errorf("a broken config changed the certificate served or the limits")
	}
}

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (l *logLines) logf(t *testing.T) func(string, ...any) {
	return func(f string, a ...any) {
		line := fmt.Sprintf(f, a...)
		l.add(line)
		t.Log(line)
	}
}
