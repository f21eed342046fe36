package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/enroll"
	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// enrollFrom runs an agent's enrollment (enroll.Enroll, as hubtunnel
// enroll does) with code and key over a new connection to the relay's
// agent port from the loopback address from ("" for the default).
func (tr *testRelay) enrollFrom(t *testing.T, from string, code enroll.Code, key vpn.PublicKey) (enroll.Result, error) {
	t.Helper()
	c := tr.dialEnroll(t, from)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return enroll.Enroll(ctx, c, code, key, "relay-test-agent/1")
}

func (tr *testRelay) dialEnroll(t *testing.T, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", tr.AgentAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newCode makes a code for hub at tr, owned by user "owner", valid for ttl
// (0: the default).
func (tr *testRelay) newCode(t *testing.T, hub string, ttl time.Duration) enroll.Code {
	t.Helper()
	code, _, err := tr.NewEnrollCode(context.Background(), CodeSpec{Hub: hub, Owner: "owner", CreatedBy: "operator", TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func newKey(t *testing.T) vpn.PrivateKey {
	t.Helper()
	k, err := vpn.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// refusedWith reports whether err is the relay's refusal with code.
func refusedWith(err error, code uint8) bool {
	var re *enroll.Refused
	return errors.As(err, &re) && re.Code == code
}

// TestEnrollServesTheHubAtOnce: a good code enrolls a hub over the agent
// port; the relay serves it before it answers, so the agent's tunnel
// connection, made right after, is accepted at once; its owner reaches it,
// the enrollment is logged and audited without the code, and the code
// works only once.
func TestEnrollServesTheHubAtOnce(t *testing.T) {
	tr := startTestRelay(t, false, "a")
	code := tr.newCode(t, "garage", 0)
	k := newKey(t)
	res, err := tr.enrollFrom(t, "", code, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	want := enroll.Result{Hub: "garage", TunnelIP: "100.96.0.3", RelayTunnelIP: "100.96.0.1",
		URL: tr.hubOrigin("garage", true) + "/", RelayTLS: net.JoinHostPort("localhost", strconv.Itoa(443+tr.offset)), RelayKey: tr.PublicKey()}
	if res != want {
		t.Fatalf("result %+v\nwant   %+v", res, want)
	}
	if tr.hubs.name("garage") == nil {
		t.Fatal("the relay answered before it served the new hub")
	}
	a := startTestAgent(t, tr, k, res.TunnelIP, vpn.PublicKey{})
	poll.Until(t, 10*time.Second, "hub garage online", func() bool { return tr.hubs.online(tr.hubs.name("garage")) })
	if n := tr.logged("unknown agent key"); n != 0 || a.bind.Status().Connects != 1 {
		t.Fatalf("the new hub's agent was turned away first (%d log lines, %d connects)", n, a.bind.Status().Connects)
	}
	if got := tr.ask(t, 443, "garage.localhost", "/who", tr.cookie(true)); got.code != 200 || got.body != "100.96.0.3" {
		t.Fatalf("the owner asking the new hub: %d %q", got.code, got.body)
	}
	if tr.logged(`msg="hub enrolled" hub=garage remote=127.0.0.1:`, "software=relay-test-agent/1") != 1 {
		t.Error("no log line for the enrollment")
	}
	id := code.ID()
	secret := code.String()[strings.IndexByte(code.String(), '/')+1:]
	if n := tr.logged(secret) + tr.logged(hex.EncodeToString(id[:])); n != 0 {
		t.Errorf("the code or its ID was logged (%d lines)", n)
	}
	poll.Until(t, 5*time.Second, "the enrollment's audit record", func() bool {
		es, err := tr.Store().Audit(context.Background(), store.AuditFilter{Kind: store.KindEnroll})
		return err == nil && len(es) == 1 && es[0].Hub == "garage" && es[0].Outcome == "ok" && es[0].Detail == "relay-test-agent/1" && strings.HasPrefix(es[0].Source, "127.0.0.1:")
	})

	// Once only, whoever tries it next.
	if _, err := tr.enrollFrom(t, "", code, newKey(t).Public()); !refusedWith(err, wire.CodeEnrollUsed) {
		t.Fatalf("the same code again: %v; want used already", err)
	}
	if _, err := tr.enrollFrom(t, "", code, k.Public()); !refusedWith(err, wire.CodeEnrollUsed) {
		t.Fatalf("the same code with the same key: %v; want used already", err)
	}
}

// TestEnrollRefusesBadCodes: an expired code, a code the relay never made,
// one made under another relay key, and a registration without the code's
// secret are each refused with their own code, and enroll nothing.
func TestEnrollRefusesBadCodes(t *testing.T) {
	tr := startTestRelay(t, false, "a")
	k := newKey(t)
	ctx := context.Background()

	expired := tr.newCode(t, "old", time.Minute)
	tr.clock.advance(2 * time.Minute)
	if _, err := tr.enrollFrom(t, "", expired, k.Public()); !refusedWith(err, wire.CodeEnrollExpired) {
		t.Fatalf("expired code: %v", err)
	}

	var secret [enroll.SecretLen]byte
	rand.Read(secret[:])
	never, _ := enroll.New(tr.cfg.EnrollAddress, secret)
	if _, err := tr.enrollFrom(t, "", never, k.Public()); !refusedWith(err, wire.CodeEnrollUnknown) {
		t.Fatalf("a code from another relay: %v", err)
	}
	// Made in this store, but under another relay key (the relay's key was
	// replaced since): its secret is not this relay's to derive.
	foreign, _, err := MakeEnrollCode(ctx, tr.Store(), newKey(t), tr.cfg.EnrollAddress, CodeSpec{Hub: "foreign", CreatedBy: "operator"}, tr.clock.now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.enrollFrom(t, "", foreign, k.Public()); !refusedWith(err, wire.CodeEnrollUnknown) {
		t.Fatalf("a code made under another relay key: %v", err)
	}

	// Someone who saw the code's ID go by (it crosses the network in
	// clear) but has not the code cannot register with it.
	good := tr.newCode(t, "good", 0)
	wc := wire.NewConn(tr.dialEnroll(t, ""), wire.ConnConfig{})
	wc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := wc.Write([][]byte{enroll.Request{Version: enroll.Version, ID: good.ID()}.Marshal()}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, wire.MaxFrame)
	if n, err := wc.ReadFrame(buf); err != nil || buf[0] != wire.TypeEnrollChallenge || n != 1+32+16+32 {
		t.Fatalf("challenge: %d bytes, %v", n, err)
	}
	forged := append([]byte{wire.TypeEnrollRegister}, make([]byte, 64)...)
	if err := wc.Write([][]byte{forged}); err != nil {
		t.Fatal(err)
	}
	n, err := wc.ReadFrame(buf)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := wire.ParseError(buf[:n]); err != nil || e.Code != wire.CodeEnrollUnknown {
		t.Fatalf("a forged registration: %+v %v; want refused as unknown", e, err)
	}

	for _, name := range []string{"old", "foreign", "good"} {
		if tr.hubs.name(name) != nil {
			t.Errorf("hub %s is served after a refused enrollment", name)
		}
	}
	// The code itself still works for whoever holds it.
	if res, err := tr.enrollFrom(t, "", good, k.Public()); err != nil || res.Hub != "good" {
		t.Fatalf("the good code after a forged registration: %+v %v", res, err)
	}
	if tr.logged(`msg="enrollment refused" remote=127.0.0.1:`, `reason="code expired"`) != 1 ||
		tr.logged(`reason="unknown code"`) != 1 ||
		tr.logged(`reason="a code made under another relay key"`) != 1 ||
		tr.logged(`reason="a registration not made with the code (wrong MAC)"`) != 1 {
		t.Error("the refusals were not logged with their reasons")
	}
}

// TestEnrollAttemptsAreLimited: after enrollAttempts failed attempts from
// an address, even a good code is refused from it for enrollWindow, logged
// once a minute at most; another address is not affected, and a
// successful enrollment does not count.
func TestEnrollAttemptsAreLimited(t *testing.T) {
	tr := startTestRelayWith(t, false, withMetrics(nil))
	k := newKey(t)
	ok := tr.newCode(t, "first", 0)
	if _, err := tr.enrollFrom(t, "127.0.0.1", ok, k.Public()); err != nil {
		t.Fatal(err)
	}
	for i := range enrollAttempts {
		var secret [enroll.SecretLen]byte
		rand.Read(secret[:])
		guess, _ := enroll.New(tr.cfg.EnrollAddress, secret)
		if _, err := tr.enrollFrom(t, "127.0.0.1", guess, k.Public()); !refusedWith(err, wire.CodeEnrollUnknown) {
			t.Fatalf("guess %d: %v; want unknown code (a success must not have counted)", i+1, err)
		}
	}
	// A scan from many addresses must not fill the log: one line per
	// reason for a while, every refusal in the audit log.
	if n := tr.logged(`msg="enrollment refused"`, `reason="unknown code"`); n != 1 {
		t.Errorf("%d log lines for %d refused guesses, want 1", n, enrollAttempts)
	}
	good := tr.newCode(t, "garage", 0)
	for range 2 {
		_, err := tr.enrollFrom(t, "127.0.0.1", good, newKey(t).Public())
		if !refusedWith(err, wire.CodeEnrollLimit) || !strings.Contains(err.Error(), "wait 15 minutes") {
			t.Fatalf("a good code after %d guesses: %v; want the limit", enrollAttempts, err)
		}
	}
	if n := tr.logged(`msg="enrollment attempts over the limit: refused" address=127.0.0.1 `); n != 1 {
		t.Fatalf("%d log lines for the limit, want 1", n)
	}
	wantMetrics(t, tr.Server, map[string]float64{
		"hubrelay_limit_refusals_total{limit=enroll_attempts}": 2,
		"hubrelay_enrollments_total{outcome=refused}":          enrollAttempts,
		"hubrelay_enrollments_total{outcome=ok}":               1,
	})
	// Another address enrolls meanwhile.
	other := tr.newCode(t, "shed", 0)
	if res, err := tr.enrollFrom(t, "127.0.0.2", other, newKey(t).Public()); err != nil || res.Hub != "shed" {
		t.Fatalf("another address: %+v %v", res, err)
	}
	tr.clock.advance(enrollWindow)
	if res, err := tr.enrollFrom(t, "127.0.0.1", good, newKey(t).Public()); err != nil || res.Hub != "garage" {
		t.Fatalf("after the window: %+v %v", res, err)
	}
}

// TestEnrollDoesNotInterruptOtherHubs: a connected hub's agent connection
// and a user's kept-alive connection to it carry on through enrollments,
// good and refused.
func TestEnrollDoesNotInterruptOtherHubs(t *testing.T) {
	tr := startTestRelay(t, false, "a")
	a := startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", vpn.PublicKey{})
	poll.Until(t, 10*time.Second, "hub a online", func() bool { return tr.hubs.online(tr.hubs.name("a")) })
	user := tr.dialPublic(t, 443, sni("a.localhost"), "")
	ask := "GET /who HTTP/1.1\r\nHost: a.localhost\r\n" + tr.cookie(true) + "\r\n"
	if got := exchange(t, user, ask, 1); got[0].code != 200 || got[0].body != "100.96.0.2" {
		t.Fatalf("hub a before: %+v", got[0])
	}
	for i, name := range []string{"b", "c", "d"} {
		if _, err := tr.enrollFrom(t, "", tr.newCode(t, name, 0), newKey(t).Public()); err != nil {
			t.Fatal(err)
		}
		var secret [enroll.SecretLen]byte
		rand.Read(secret[:])
		guess, _ := enroll.New(tr.cfg.EnrollAddress, secret)
		if _, err := tr.enrollFrom(t, "", guess, newKey(t).Public()); !refusedWith(err, wire.CodeEnrollUnknown) {
			t.Fatalf("a guessed code: %v", err)
		}
		if got := exchange(t, user, ask, 1); got[0].code != 200 || got[0].body != "100.96.0.2" {
			t.Fatalf("hub a after enrollment %d: %+v", i+1, got[0])
		}
	}
	if st := a.bind.Status(); !st.Connected || st.Connects != 1 || !tr.hubs.online(tr.hubs.name("a")) {
		t.Fatalf("hub a's agent connection: %+v", st)
	}
}

// TestEnrollAddressOfAPickedPort: a relay whose agent_listen port is 0
// writes the port it picked into its codes, and the code enrolls there.
func TestEnrollAddressOfAPickedPort(t *testing.T) {
	tr := startTestRelayWith(t, false, func(c *Config) { c.AgentListen = "127.0.0.1:0" })
	code := tr.newCode(t, "garage", 0)
	_, port, _ := net.SplitHostPort(tr.AgentAddr().String())
	if code.Addr() != "localhost:"+port {
		t.Fatalf("the code names %s; the relay's agent port is %s", code.Addr(), tr.AgentAddr())
	}
	if _, err := tr.enrollFrom(t, "", code, newKey(t).Public()); err != nil {
		t.Fatal(err)
	}
}

// gatedConn runs before() ahead of its second write: the agent's
// Register, in enroll.Enroll.
type gatedConn struct {
	net.Conn
	writes int
	before func()
}

func (g *gatedConn) Write(p []byte) (int, error) {
	if g.writes++; g.writes == 2 {
		g.before()
	}
	return g.Conn.Write(p)
}

// TestEnrollFinishesWhileTheRelayShutsDown: an enrollment under way when
// the relay is told to stop is not sent a GoingAway in the middle of its
// exchange (which would leave a hub enrolled whose agent never heard so);
// it finishes within the relay's grace.
func TestEnrollFinishesWhileTheRelayShutsDown(t *testing.T) {
	tr := startTestRelay(t, false)
	code := tr.newCode(t, "garage", 0)
	closed := make(chan struct{})
	c := &gatedConn{Conn: tr.dialEnroll(t, ""), before: func() {
		go func() {
			tr.Close()
			close(closed)
		}()
		poll.Until(t, 5*time.Second, "the relay going away", func() bool {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			return tr.goingAway
		})
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := enroll.Enroll(ctx, c, code, newKey(t).Public(), "relay-test-agent/1")
	if err != nil || res.Hub != "garage" {
		t.Fatalf("an enrollment while the relay shuts down: %+v %v", res, err)
	}
	<-closed
}
