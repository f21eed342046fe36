package enroll

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

func testSecret(b byte) (s [SecretLen]byte) {
	for i := range s {
		s[i] = b + byte(i)*17
	}
	return s
}

func TestCodeRoundTrip(t *testing.T) {
	for _, relay := range []string{"relay.example.org", "relay.example.org:8443", "127.0.0.1:41234", "[::1]:7000", "2001:db8::1"} {
		c, err := New(relay, testSecret(3))
		if err != nil {
			t.Fatalf("New(%q): %v", relay, err)
		}
		s := c.String()
		back, err := Parse(s)
		if err != nil || back != c {
			t.Fatalf("Parse(%q) = %+v, %v; want %+v", s, back, err, c)
		}
	}
}

func TestCodeIsWhatAPersonTypes(t *testing.T) {
	c, _ := New("Relay.Example.org:7443", testSecret(9))
	s := c.String()
	if !strings.HasPrefix(s, "relay.example.org/") || strings.Contains(s, ":7443") {
		t.Fatalf("code %q: want the lower-case host without the default port", s)
	}
	secret := s[strings.IndexByte(s, '/')+1:]
	if len(secret) != 22 || strings.ContainsAny(secret, "ILOU") {
		t.Fatalf("code %q: want 18 symbols in groups of four, none of I L O U", s)
	}
	if c.Addr() != "relay.example.org:7443" {
		t.Fatalf("Addr %q", c.Addr())
	}
	// Typed on a phone: lower case, spaces instead of dashes, O for 0 and
	// l for 1.
	host, sec, _ := strings.Cut(s, "/")
	sec = strings.NewReplacer("-", " ", "0", "o", "1", "l").Replace(strings.ToLower(sec))
	typed := strings.ToUpper(host) + "/" + sec
	if got, err := Parse("  " + typed + " \n"); err != nil || got != c {
		t.Fatalf("Parse(%q) = %v; want the same code", typed, err)
	}
}

func TestTyposAreCaught(t *testing.T) {
	c, _ := New("relay.example.org", testSecret(1))
	s := c.String()
	slash := strings.IndexByte(s, '/')
	missed := 0
	total := 0
	for i := slash + 1; i < len(s); i++ {
		if s[i] == '-' {
			continue
		}
		for _, r := range alphabet {
			if byte(r) == s[i] {
				continue
			}
			total++
			if _, err := Parse(s[:i] + string(r) + s[i+1:]); !errors.Is(err, ErrTypo) {
				missed++
			}
		}
	}
	// A 10-bit checksum misses about one change in 1024.
	if missed > total/200 {
		t.Errorf("%d of %d one-letter typos passed", missed, total)
	}
	for _, bad := range []string{
		"relay.example.org/" + s[slash+1:len(s)-1], // a letter short
		"relay.example.com" + s[slash:],            // another relay's address
		"relay.example.org/7KQ4-M2XD-9PWE-HT3A-R!",
	} {
		if _, err := Parse(bad); !errors.Is(err, ErrTypo) {
			t.Errorf("Parse(%q) = %v; want ErrTypo", bad, err)
		}
	}
	for _, bad := range []string{"", "7KQ4M2XD9PWEHT3ARX", "/7KQ4M2XD9PWEHT3ARX", "relay example/7KQ4", "relay.example.org:0/7KQ4", "relay.example.org:99999/7KQ4"} {
		if _, err := Parse(bad); !errors.Is(err, ErrFormat) {
			t.Errorf("Parse(%q) = %v; want ErrFormat", bad, err)
		}
	}
}

// relayEnd plays the relay's side with the Exchange API over a pipe, with
// the given secret (the real one, or a man in the middle's guess).
func relayEnd(t *testing.T, c net.Conn, secret [SecretLen]byte, relayKey vpn.PublicKey, refuse *wire.Error, tamper bool) <-chan vpn.PublicKey {
	got := make(chan vpn.PublicKey, 1)
	go func() {
		defer c.Close()
		defer close(got)
		wc := wire.NewConn(c, wire.ConnConfig{})
		buf := make([]byte, wire.MaxFrame)
		n, err := wc.ReadFrame(buf)
		if err != nil {
			return
		}
		req, err := ParseRequest(buf[:n])
		if err != nil {
			t.Errorf("relay: %v", err)
			return
		}
		if refuse != nil {
			wc.Write([][]byte{refuse.Marshal()})
			return
		}
		x, ch, err := Challenge(secret, req, relayKey)
		if err != nil {
			// A man in the middle without the secret answers anyway.
			x = &Exchange{key: keyOf(secret), t: transcript{id: req.ID, agentNonce: req.Nonce, relayKey: relayKey}}
			ch = append(append(append([]byte{wire.TypeEnrollChallenge}, relayKey[:]...), x.t.relayNonce[:]...), x.t.mac(x.key, "relay")...)
		}
		wc.Write([][]byte{ch})
		if n, err = wc.ReadFrame(buf); err != nil {
			return
		}
		hub, sw, err := x.Register(buf[:n])
		if err != nil {
			t.Errorf("relay: %v", err)
			return
		}
		if sw != "hubtunnel/test" {
			t.Errorf("software %q", sw)
		}
		res, _ := x.Result(Result{Hub: "home", TunnelIP: "100.96.0.2", RelayTunnelIP: "100.96.0.1"})
		if tamper {
			res[len(res)-3] ^= 1
		}
		wc.Write([][]byte{res})
		got <- hub
	}()
	return got
}

func TestEnrollProvesBothSides(t *testing.T) {
	relayKey, _ := vpn.GeneratePrivateKey()
	hubKey, _ := vpn.GeneratePrivateKey()
	code, _ := New("relay.example.org", testSecret(5))

	a, b := net.Pipe()
	got := relayEnd(t, b, code.Secret, relayKey.Public(), nil, false)
	res, err := Enroll(context.Background(), a, code, hubKey.Public(), "hubtunnel/test")
	if err != nil {
		t.Fatal(err)
	}
	if res.Hub != "home" || res.TunnelIP != "100.96.0.2" || res.RelayKey != relayKey.Public() {
		t.Fatalf("result %+v", res)
	}
	if k := <-got; k != hubKey.Public() {
		t.Fatalf("relay registered %v, want the hub's key", k)
	}

	// Someone without the secret cannot pass for the relay.
	a, b = net.Pipe()
	relayEnd(t, b, testSecret(6), relayKey.Public(), nil, false)
	if _, err := Enroll(context.Background(), a, code, hubKey.Public(), "hubtunnel/test"); !errors.Is(err, ErrRelayNotProven) {
		t.Fatalf("impostor: %v; want ErrRelayNotProven", err)
	}

	// Nor change the answer.
	a, b = net.Pipe()
	relayEnd(t, b, code.Secret, relayKey.Public(), nil, true)
	if _, err := Enroll(context.Background(), a, code, hubKey.Public(), "hubtunnel/test"); !errors.Is(err, ErrRelayNotProven) {
		t.Fatalf("tampered result: %v; want ErrRelayNotProven", err)
	}
}

func TestRegisterWithoutTheCodeIsRefused(t *testing.T) {
	relayKey, _ := vpn.GeneratePrivateKey()
	code, _ := New("relay.example.org", testSecret(5))
	x, _, err := Challenge(code.Secret, Request{Version: Version, ID: code.ID()}, relayKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 1+32+macLen)
	p[0] = wire.TypeEnrollRegister
	if _, _, err := x.Register(p); !errors.Is(err, ErrNotProven) {
		t.Fatalf("Register with a zero MAC: %v", err)
	}
	if _, _, err := Challenge(testSecret(7), Request{ID: code.ID()}, relayKey.Public()); err == nil {
		t.Fatal("Challenge accepted a secret that is not the request's code's")
	}
}

func TestRefusalsSpeakToTheOwner(t *testing.T) {
	hubKey, _ := vpn.GeneratePrivateKey()
	code, _ := New("relay.example.org", testSecret(5))
	for _, c := range []struct {
		code uint8
		want string
	}{
		{wire.CodeEnrollUsed, "used already"},
		{wire.CodeEnrollExpired, "expired"},
		{wire.CodeEnrollUnknown, "another relay"},
		{wire.CodeEnrollLimit, "wait 15 minutes"},
	} {
		a, b := net.Pipe()
		relayEnd(t, b, code.Secret, vpn.PublicKey{}, &wire.Error{Code: c.code, Message: "x"}, false)
		_, err := Enroll(context.Background(), a, code, hubKey.Public(), "hubtunnel/test")
		var re *Refused
		if !errors.As(err, &re) || re.Code != c.code || !strings.Contains(err.Error(), c.want) {
			t.Errorf("code %d: %v; want a Refused saying %q", c.code, err, c.want)
		}
	}
}

func TestSecretsDeriveFromTheRelayKey(t *testing.T) {
	k1, _ := vpn.GeneratePrivateKey()
	k2, _ := vpn.GeneratePrivateKey()
	seed := [16]byte{1, 2, 3}
	first, again := DeriveSecret(k1, seed), DeriveSecret(k1, seed)
	if first != again || first == DeriveSecret(k2, seed) || first == DeriveSecret(k1, [16]byte{4}) {
		t.Fatal("DeriveSecret must be a function of both the key and the seed")
	}
}

func FuzzParse(f *testing.F) {
	c, _ := New("relay.example.org", testSecret(2))
	f.Add(c.String())
	f.Add("[::1]:7000/0000-0000-0000-0000-00")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			return
		}
		if back, err := Parse(c.String()); err != nil || back != c {
			t.Fatalf("%q parsed to %+v, which does not round-trip: %v", s, c, err)
		}
	})
}

// FuzzExchange feeds the exchange's decoders what a peer controls: the
// relay's ParseRequest and Register, and the agent's reading of a relay's
// answers (Enroll against arbitrary frames). None may panic, and nothing
// unproven may pass.
func FuzzExchange(f *testing.F) {
	code, _ := New("relay.example.org", testSecret(4))
	relayKey, _ := vpn.GeneratePrivateKey()
	f.Add(Request{Version: Version, ID: code.ID()}.Marshal())
	f.Add(append([]byte{wire.TypeEnrollRegister}, make([]byte, 64)...))
	f.Add([]byte{wire.TypeError, wire.CodeEnrollUsed, 'x'})
	f.Add(append([]byte{wire.TypeEnrollChallenge}, make([]byte, 80)...))
	f.Fuzz(func(t *testing.T, p []byte) {
		if req, err := ParseRequest(p); err == nil && req.ID != code.ID() {
			if _, _, err := Challenge(code.Secret, req, relayKey.Public()); err == nil {
				t.Fatal("a challenge for a request naming another code")
			}
		}
		x, _, err := Challenge(code.Secret, Request{Version: Version, ID: code.ID()}, relayKey.Public())
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := x.Register(p); err == nil {
			t.Fatalf("a registration without the code's MAC passed: %x", p)
		}
		// The agent reading p as the relay's answer.
		if len(p) == 0 || len(p) > wire.MaxFrame {
			return
		}
		a, b := net.Pipe()
		go func() {
			defer b.Close()
			wc := wire.NewConn(b, wire.ConnConfig{})
			buf := make([]byte, wire.MaxFrame)
			if _, err := wc.ReadFrame(buf); err != nil {
				return
			}
			wc.Write([][]byte{p})
		}()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := Enroll(ctx, a, code, relayKey.Public(), "fuzz"); err == nil {
			t.Fatalf("Enroll succeeded on an unproven answer: %x", p)
		}
	})
}
