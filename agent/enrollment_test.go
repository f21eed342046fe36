package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/config"
	"github.com/hubtunnel/hubtunnel/enroll"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// fakeEnrollRelay is the relay's side of the exchange (package enroll's
// own), on a loopback port, for one code: it answers every connection
// with refuse (a wire.CodeEnroll…) or, when refuse is 0, with result.
type fakeEnrollRelay struct {
	code     enroll.Code
	key      vpn.PrivateKey
	result   enroll.Result
	refuse   uint8
	hubKeys  chan vpn.PublicKey // the keys that registered
	accepted chan struct{}      // one value per connection
}

func newFakeEnrollRelay(t *testing.T) *fakeEnrollRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f := &fakeEnrollRelay{
		result:   enroll.Result{Hub: "garage", TunnelIP: "100.96.0.9", RelayTunnelIP: "100.96.0.1", URL: "https://garage.relay.example/"},
		hubKeys:  make(chan vpn.PublicKey, 10),
		accepted: make(chan struct{}, 10),
	}
	if f.key, err = vpn.GeneratePrivateKey(); err != nil {
		t.Fatal(err)
	}
	var secret [enroll.SecretLen]byte
	rand.Read(secret[:])
	if f.code, err = enroll.New(ln.Addr().String(), secret); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.accepted <- struct{}{}
			go f.serve(c)
		}
	}()
	return f
}

func (f *fakeEnrollRelay) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	wc := wire.NewConn(c, wire.ConnConfig{})
	defer wc.Close()
	buf := make([]byte, wire.MaxFrame)
	n, err := wc.ReadFrame(buf)
	if err != nil {
		return
	}
	req, err := enroll.ParseRequest(buf[:n])
	if err != nil {
		return
	}
	if f.refuse != 0 {
		wc.Write([][]byte{wire.Error{Code: f.refuse, Message: "no"}.Marshal()})
		return
	}
	x, ch, err := enroll.Challenge(f.code.Secret, req, f.key.Public())
	if err != nil || wc.Write([][]byte{ch}) != nil {
		return
	}
	if n, err = wc.ReadFrame(buf); err != nil {
		return
	}
	hub, _, err := x.Register(buf[:n])
	if err != nil {
		return
	}
	f.hubKeys <- hub
	res, err := x.Result(f.result)
	if err != nil {
		return
	}
	wc.Write([][]byte{res})
}

// unenrolledConfig writes a config without a relay into a new folder and
// loads it.
func unenrolledConfig(t *testing.T, toml string) *Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hubtunnel.toml")
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestConfigWithoutRelay: a config that names no relay is a hub waiting to
// enroll; one that names only part of it is an error naming the key.
func TestConfigWithoutRelay(t *testing.T) {
	c := &Config{}
	if err := config.Parse("hub.toml", []byte("ui_listen = \"127.0.0.1:8099\"\n"), c); err != nil || c.Enrolled() {
		t.Errorf("no relay: err %v, enrolled %v; want a valid config, not enrolled", err, c.Enrolled())
	}
	for _, tt := range []struct{ toml, want string }{
		{"relay = \"relay.example.com:7443\"\n", "relay_public_key"},
		{"tunnel_ip = \"100.96.0.2\"\n", "relay: missing"},
		{"relay = \"relay.example.com:7443\"\nrelay_public_key = \"koupVBjnqeNJyBZKQq9MFFHGq2YsgHpiMMnPW6rSY1I=\"\n", "tunnel_ip"},
	} {
		err := config.Parse("hub.toml", []byte(tt.toml), &Config{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error about %s", tt.toml, err, tt.want)
		}
	}
}

// TestEnrollmentOverridesTOML: enrollment.json beside the config provides
// the relay, its key and the addresses, in place of the TOML's, and says
// which keys it overrode; a damaged one is ignored with a message (the
// agent runs without it rather than not at all).
func TestEnrollmentOverridesTOML(t *testing.T) {
	dir := t.TempDir()
	e := Enrollment{Relay: "relay.example.org:7443", RelayPublicKey: "koupVBjnqeNJyBZKQq9MFFHGq2YsgHpiMMnPW6rSY1I=", Hub: "garage",
		TunnelIP: "100.96.0.9", RelayTunnelIP: "100.96.0.1", URL: "https://garage.relay.example.org/", Enrolled: time.Unix(1_800_000_000, 0).UTC()}
	if err := e.save(filepath.Join(dir, EnrollmentFile)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "hubtunnel.toml")
	os.WriteFile(path, []byte(dnsBase+"name = \"garage\"\n"), 0o600)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Enrolled() || cfg.Relay != e.Relay || cfg.relayHost != "relay.example.org" || cfg.tunnelIP.String() != "100.96.0.9" || cfg.Name != "garage" {
		t.Errorf("enrolled config: relay %q (host %q), tunnel %s, name %q", cfg.Relay, cfg.relayHost, cfg.tunnelIP, cfg.Name)
	}
	if want := []string{"relay", "tunnel_ip"}; !slices.Equal(cfg.overridden, want) {
		t.Errorf("overridden %v, want %v (name has the same value)", cfg.overridden, want)
	}
	if got := cfg.Enrollment(); got == nil || *got != e {
		t.Errorf("Enrollment() = %+v, want %+v", got, e)
	}

	for _, bad := range []string{"{", `{"relay": "r:1"}`, `{"colour": 1}`} {
		os.WriteFile(filepath.Join(dir, EnrollmentFile), []byte(bad), 0o600)
		cfg, err := LoadConfig(path)
		if err != nil || cfg.Enrollment() != nil || len(cfg.ignored) != 1 || !strings.Contains(cfg.ignored[0], "enroll again with a new code, or remove it") {
			t.Errorf("enrollment.json %s: %v; ignored %q", bad, err, cfg.ignored)
		}
	}
}

// TestEnrollWritesEnrollment: a good exchange makes the hub's key, registers
// it, and leaves an enrollment.json (mode 0600) that the next start runs with.
func TestEnrollWritesEnrollment(t *testing.T) {
	f := newFakeEnrollRelay(t)
	cfg := unenrolledConfig(t, "proxy = \"none\"\n")
	e, err := Enroll(context.Background(), cfg, f.code, "hubtunnel/test", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	k, err := vpn.LoadPrivateKey(cfg.PrivateKeyFile)
	if err != nil {
		t.Fatalf("the hub's key: %v", err)
	}
	if got := <-f.hubKeys; got != k.Public() {
		t.Errorf("registered %s, the hub's key is %s", got, k.Public())
	}
	fi, err := os.Stat(cfg.EnrollmentPath())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("enrollment.json: %v, mode %v", err, fi)
	}
	again, err := LoadConfig(cfg.path)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Enrolled() || again.Relay != f.code.Addr() || again.relayKey != f.key.Public() || again.tunnelIP.String() != "100.96.0.9" ||
		again.Name != "garage" || e.URL != "https://garage.relay.example/" || *again.Enrollment() != *e {
		t.Errorf("after enrolling: relay %q key %s tunnel %s name %q; enrollment %+v", again.Relay, again.relayKey, again.tunnelIP, again.Name, again.Enrollment())
	}
}

// TestEnrollFailureChangesNothing: a refused code, an unusable answer or a
// relay that does not answer leaves the hub's files as they were, and the
// owner reads why.
func TestEnrollFailureChangesNothing(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(*fakeEnrollRelay) enroll.Code
		want   string
	}{
		{"used", func(f *fakeEnrollRelay) enroll.Code { f.refuse = wire.CodeEnrollUsed; return f.code }, "this code has been used already"},
		{"expired", func(f *fakeEnrollRelay) enroll.Code { f.refuse = wire.CodeEnrollExpired; return f.code }, "this code has expired"},
		{"unknown", func(f *fakeEnrollRelay) enroll.Code { f.refuse = wire.CodeEnrollUnknown; return f.code }, "does not know this code"},
		{"bad tunnel address", func(f *fakeEnrollRelay) enroll.Code { f.result.TunnelIP = "nowhere"; return f.code }, "the relay's answer is unusable"},
		{"bad url", func(f *fakeEnrollRelay) enroll.Code { f.result.URL = "javascript:x"; return f.code }, "the relay's answer is unusable"},
		{"closed port", func(f *fakeEnrollRelay) enroll.Code {
			c, _ := enroll.New(freePort(t), f.code.Secret)
			return c
		}, "the relay is not accepting connections"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeEnrollRelay(t)
			code := tt.change(f)
			cfg := unenrolledConfig(t, "proxy = \"none\"\n")
			before := Enrollment{Relay: "old.example:7443", RelayPublicKey: "koupVBjnqeNJyBZKQq9MFFHGq2YsgHpiMMnPW6rSY1I=", Hub: "old", TunnelIP: "100.96.0.3"}
			if err := before.save(cfg.EnrollmentPath()); err != nil {
				t.Fatal(err)
			}
			old, _ := os.ReadFile(cfg.EnrollmentPath())
			_, err := Enroll(context.Background(), cfg, code, "hubtunnel/test", t.Logf)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Enroll: %v, want %q", err, tt.want)
			}
			if now, _ := os.ReadFile(cfg.EnrollmentPath()); string(now) != string(old) {
				t.Errorf("enrollment.json changed to %s", now)
			}
			if _, err := os.Stat(cfg.PrivateKeyFile); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a key was kept for a hub that did not enroll: %v", err)
			}
		})
	}
}

// TestAgentEnrollsThroughAPI: an agent without a relay serves its status
// API ("unenrolled"), enrolls when the API is given a code, asks to be
// restarted, and refuses a second enrollment meanwhile.
func TestAgentEnrollsThroughAPI(t *testing.T) {
	f := newFakeEnrollRelay(t)
	ui := freePort(t)
	cfg := unenrolledConfig(t, "proxy = \"none\"\nui_listen = \""+ui+"\"\n")
	a := New(cfg, "test", t.Logf)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	c := localapi.NewClient(ui)
	st, err := c.Status(ctx)
	if err != nil || st.State != localapi.StateUnenrolled || st.TunnelIP != "" {
		t.Fatalf("status before enrolling: %+v, %v", st, err)
	}
	if _, err := c.Enroll(ctx, f.code.String()); err == nil || !strings.Contains(err.Error(), "run this as root") {
		t.Errorf("Enroll without the API token: %v", err)
	}
	if c.Token, err = localapi.ReadToken(a.cfg.APITokenDir()); err != nil {
		t.Fatal(err)
	}
	typo := f.code.String()
	slash := strings.IndexByte(typo, '/')
	typo = typo[:slash+1] + "U" + typo[slash+2:] // U is not in the code's alphabet
	if _, err := c.Enroll(ctx, typo); err == nil || !strings.Contains(err.Error(), "typo") {
		t.Errorf("a mistyped code: %v", err)
	}
	select {
	case <-f.accepted:
		t.Error("a mistyped code made a connection")
	default:
	}
	ans, err := c.Enroll(ctx, strings.ToLower(f.code.String()))
	if err != nil || ans.Hub != "garage" || ans.URL != "https://garage.relay.example/" || ans.Relay != f.code.Addr() {
		t.Fatalf("Enroll = %+v, %v", ans, err)
	}
	select {
	case r := <-a.RestartRequested():
		if r.Binary == "" || !strings.Contains(r.Why, "garage") {
			t.Errorf("restart %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no restart requested after enrolling")
	}
	if _, err := c.Enroll(ctx, f.code.String()); err == nil || !strings.Contains(err.Error(), "another enrollment") {
		t.Errorf("a second enrollment before the restart: %v", err)
	}
	if _, err := os.Stat(cfg.EnrollmentPath()); err != nil {
		t.Errorf("enrollment.json: %v", err)
	}
}
