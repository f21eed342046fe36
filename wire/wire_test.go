package wire

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

// streamConn is a net.Conn that only reads, from a stream in memory.
type streamConn struct {
	net.Conn
	r io.Reader
}

func (c streamConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// reader reads frames from a stream in memory through a Conn.
type reader struct {
	c   *Conn
	buf [MaxFrame]byte
}

func newReader(stream io.Reader) *reader {
	return &reader{c: NewConn(streamConn{r: stream}, ConnConfig{})}
}

func (r *reader) Next() ([]byte, error) {
	n, err := r.c.ReadFrame(r.buf[:])
	return r.buf[:n], err
}

func frames(payloads ...[]byte) []byte {
	var b []byte
	for _, p := range payloads {
		var err error
		if b, err = AppendFrame(b, p); err != nil {
			panic(err)
		}
	}
	return b
}

func TestReaderRoundTrip(t *testing.T) {
	wg := append([]byte{4, 0, 0, 0}, bytes.Repeat([]byte{0xEE}, 1448)...)
	big := bytes.Repeat([]byte{1}, MaxFrame)
	r := newReader(bytes.NewReader(frames(Hello{Version: 1, Key: [32]byte{7}, Software: "hubtunnel/test"}.Marshal(), wg, big)))
	got, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHello(got)
	if err != nil || h.Software != "hubtunnel/test" || h.Version != 1 || h.Key[0] != 7 {
		t.Fatalf("hello = %+v, %v", h, err)
	}
	if !r.c.Buffered() {
		t.Fatal("second frame should be buffered after the first read")
	}
	if got, _ := r.Next(); !bytes.Equal(got, wg) || Classify(got) != Data {
		t.Fatal("WireGuard frame changed in transit")
	}
	if got, _ := r.Next(); !bytes.Equal(got, big) {
		t.Fatal("largest frame changed in transit")
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("end = %v, want io.EOF", err)
	}
}

func TestReaderRejects(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty frame", []byte{0, 0}, ErrEmptyFrame},
		{"largest length, cut short", []byte{0xFF, 0xFF, 1, 2, 3}, io.ErrUnexpectedEOF},
		{"truncated header", []byte{0x01}, io.ErrUnexpectedEOF},
		{"truncated payload", []byte{0, 10, 1, 2, 3}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		_, err := newReader(bytes.NewReader(tt.in)).Next()
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestAppendFrameRejects(t *testing.T) {
	if _, err := AppendFrame(nil, nil); !errors.Is(err, ErrEmptyFrame) {
		t.Errorf("empty: %v", err)
	}
	if _, err := AppendFrame(nil, make([]byte, MaxFrame+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("too large: %v", err)
	}
}

func TestControlFrames(t *testing.T) {
	e, err := ParseError(Error{Code: CodeVersion, Message: "upgrade the agent"}.Marshal())
	if err != nil || e.Code != CodeVersion || e.Message != "upgrade the agent" {
		t.Fatalf("error = %+v, %v", e, err)
	}
	g, err := ParseGoingAway(GoingAway{RetryAfterMillis: 1500}.Marshal())
	if err != nil || g.RetryAfterMillis != 1500 {
		t.Fatalf("going away = %+v, %v", g, err)
	}
	ping, err := ParsePing(Ping{Token: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}}.Marshal())
	if err != nil || ping.Token != [8]byte{1, 2, 3, 4, 5, 6, 7, 8} {
		t.Fatalf("ping = %+v, %v", ping, err)
	}
	mac := PongMAC([32]byte{9}, ping.Token)
	pong, err := ParsePong(Pong{Token: ping.Token, MAC: mac}.Marshal())
	if err != nil || pong.Token != ping.Token || pong.MAC != mac {
		t.Fatalf("pong = %+v, %v", pong, err)
	}
	if mac == PongMAC([32]byte{8}, ping.Token) || mac == PongMAC([32]byte{9}, [8]byte{}) {
		t.Fatal("PongMAC ignores its key or its token")
	}
	// An agent before the MAC sends the token alone: no proof.
	if _, err := ParsePong(append([]byte{TypePong}, ping.Token[:]...)); err == nil {
		t.Fatal("a Pong without its MAC parsed")
	}
	long := Hello{Software: strings.Repeat("x", 500)}.Marshal()
	if h, err := ParseHello(long); err != nil || len(h.Software) != maxText {
		t.Fatalf("long software not clipped to %d: %d, %v", maxText, len(h.Software), err)
	}
	bad := []struct {
		name string
		p    []byte
		fn   func([]byte) error
	}{
		{"hello short", []byte{TypeHello}, func(p []byte) error { _, err := ParseHello(p); return err }},
		{"hello no key", []byte{TypeHello, 1, 'a', 'b'}, func(p []byte) error { _, err := ParseHello(p); return err }},
		{"hello newline", helloRaw('a', '\n', 'b'), func(p []byte) error { _, err := ParseHello(p); return err }},
		{"hello invalid utf8", helloRaw(0xff, 0xfe), func(p []byte) error { _, err := ParseHello(p); return err }},
		{"error wrong type", []byte{TypeHello, 1}, func(p []byte) error { _, err := ParseError(p); return err }},
		{"going away short", []byte{TypeGoingAway, 1}, func(p []byte) error { _, err := ParseGoingAway(p); return err }},
		{"ping short", []byte{TypePing, 1, 2, 3, 4, 5, 6, 7}, func(p []byte) error { _, err := ParsePing(p); return err }},
		{"ping long", append(Ping{}.Marshal(), 0), func(p []byte) error { _, err := ParsePing(p); return err }},
		{"pong as ping", Pong{}.Marshal(), func(p []byte) error { _, err := ParsePing(p); return err }},
		{"pong short", []byte{TypePong}, func(p []byte) error { _, err := ParsePong(p); return err }},
	}
	for _, tt := range bad {
		if err := tt.fn(tt.p); !errors.Is(err, ErrBadControl) {
			t.Errorf("%s: err = %v, want ErrBadControl", tt.name, err)
		}
	}
}

// helloRaw is a Hello payload with a zero key and the given software bytes.
func helloRaw(software ...byte) []byte {
	return append(append([]byte{TypeHello, 1}, make([]byte, 32)...), software...)
}

// TestClassify: the one classifier of WireGuard messages, by wireguard-go's
// own types and sizes.
func TestClassify(t *testing.T) {
	for _, tt := range []struct {
		p    []byte
		want Kind
	}{
		{wgMsg(1, 148), Initiation},
		{wgMsg(2, 92), Response},
		{wgMsg(3, 64), CookieReply},
		{wgMsg(4, 32), Keepalive},
		{wgMsg(4, 33), Data},
		{wgMsg(4, 1452), Data},
		{wgMsg(1, 147), Runt},
		{wgMsg(2, 8), Runt},
		{wgMsg(4, 31), Runt},
		{[]byte{4, 0, 0, 0}, Runt},
		{wgMsg(5, 148), Control},
		{[]byte{1, 0, 0, 1}, Control},
		{[]byte{1, 0, 0}, Control},
		{Hello{Version: 1}.Marshal(), Control},
		{GoingAway{}.Marshal(), Control},
		{Ping{Token: [8]byte{1}}.Marshal(), Control},
		{Pong{Token: [8]byte{1}}.Marshal(), Control},
		{nil, Control},
	} {
		if got := Classify(tt.p); got != tt.want {
			t.Errorf("Classify(% x…, %d bytes) = %d, want %d", tt.p[:min(len(tt.p), 4)], len(tt.p), got, tt.want)
		}
		if got := Classify(tt.p).IsWireGuard(); got != (tt.want != Control) {
			t.Errorf("%d bytes of type %d: IsWireGuard = %v", len(tt.p), tt.want, got)
		}
	}
	if got := Index(transportMsg(7, 32)); got != 7 {
		t.Errorf("Index of a keepalive for receiver 7 = %d", got)
	}
}

// FuzzReader feeds arbitrary streams to the frame decoder and the control
// parsers: they must never panic, never return a frame over MaxFrame, and
// what they accept must re-encode to the same bytes.
func FuzzReader(f *testing.F) {
	f.Add(frames(Hello{Version: 1, Software: "hubtunnel/0.1"}.Marshal()))
	f.Add(frames([]byte{1, 0, 0, 0, 1, 2, 3}, GoingAway{RetryAfterMillis: 500}.Marshal()))
	f.Add(frames(Ping{Token: [8]byte{1, 2}}.Marshal(), Pong{Token: [8]byte{1, 2}}.Marshal()))
	f.Add(frames(Ours.Marshal(), []byte{TypeFeatures, 0x20, 0, 0xff, 7}))
	f.Add(frames(HubInfo{Next: [32]byte{9}, Hub: "cellar", URL: "https://cellar.example.net/"}.Seal(fuzzShared, fuzzEphemeral)))
	f.Add([]byte{0xff, 0xff, 0})
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := newReader(bytes.NewReader(stream))
		for i := 0; i < 1000; i++ {
			p, err := r.Next()
			if err != nil {
				return
			}
			if len(p) == 0 || len(p) > MaxFrame {
				t.Fatalf("frame of %d bytes accepted", len(p))
			}
			switch p[0] {
			case TypeHello:
				if h, err := ParseHello(p); err == nil && !bytes.Equal(h.Marshal(), p) {
					t.Fatalf("hello does not round-trip")
				}
			case TypeError:
				if e, err := ParseError(p); err == nil && !bytes.Equal(e.Marshal(), p) {
					t.Fatalf("error does not round-trip")
				}
			case TypeGoingAway:
				if g, err := ParseGoingAway(p); err == nil && !bytes.Equal(g.Marshal(), p) {
					t.Fatalf("going-away does not round-trip")
				}
			case TypePing:
				if p2, err := ParsePing(p); err == nil && !bytes.Equal(p2.Marshal(), p) {
					t.Fatalf("ping does not round-trip")
				}
			case TypePong:
				if p2, err := ParsePong(p); err == nil && !bytes.Equal(p2.Marshal(), p) {
					t.Fatalf("pong does not round-trip")
				}
			case TypeFeatures:
				// A later version's flags and fields are left out: what
				// was understood survives the wire.
				if f, err := ParseFeatures(p); err == nil {
					if g, err := ParseFeatures(f.Marshal()); err != nil || g != f {
						t.Fatalf("features do not round-trip: %+v, %+v, %v", f, g, err)
					}
				}
			case TypeHubInfo:
				// MAC'd as the relay would, so the fuzzer reaches the
				// decoder behind the MAC check.
				if len(p) < 1+hubInfoMACSize {
					break
				}
				q := append([]byte(nil), p...)
				mac := hubInfoMAC(fuzzShared, fuzzEphemeral, q[1+hubInfoMACSize:])
				copy(q[1:], mac[:])
				h, err := OpenHubInfo(q, fuzzShared, fuzzEphemeral)
				if err != nil {
					break
				}
				if h2, err := OpenHubInfo(h.Seal(fuzzShared, fuzzEphemeral), fuzzShared, fuzzEphemeral); err != nil || h2 != h {
					t.Fatalf("hub info does not round-trip: %+v, %+v, %v", h, h2, err)
				}
			}
		}
	})
}

// TestReadFrameDoesNotAllocate: ReadFrame runs once per WireGuard message.
func TestReadFrameDoesNotAllocate(t *testing.T) {
	msg := append([]byte{4, 0, 0, 0}, make([]byte, 1400)...)
	stream := bytes.Repeat(frames(msg), 200)
	src := bytes.NewReader(stream)
	c := NewConn(streamConn{r: src}, ConnConfig{Counters: new(Counters)})
	buf := make([]byte, MaxFrame)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := c.ReadFrame(buf); err != nil {
			src.Reset(stream)
			c.rd.r, c.rd.w = 0, 0
		}
	})
	if allocs != 0 {
		t.Fatalf("ReadFrame allocates %.1f times per frame", allocs)
	}
}

// TestReadFrameIntoShortBuffer: a frame that does not fit the caller's
// buffer is dropped, and the next one is read as usual.
func TestReadFrameIntoShortBuffer(t *testing.T) {
	c := NewConn(streamConn{r: bytes.NewReader(frames(wgMsg(4, 200), wgMsg(4, 50)))}, ConnConfig{})
	buf := make([]byte, 100)
	if n, err := c.ReadFrame(buf); n != 0 || !errors.Is(err, ErrShortBuffer) {
		t.Fatalf("a 200-byte frame into 100 bytes: %d, %v; want ErrShortBuffer", n, err)
	}
	if n, err := c.ReadFrame(buf); n != 50 || err != nil || !bytes.Equal(buf[:n], wgMsg(4, 50)) {
		t.Fatalf("the frame after it: %d, %v", n, err)
	}
}

func TestSessionUnknown(t *testing.T) {
	m := AppendSessionUnknown(nil, 0xdeadbeef)
	if len(m) != SessionUnknownSize {
		t.Fatalf("%d bytes, want %d", len(m), SessionUnknownSize)
	}
	if Classify(m) != Control {
		t.Errorf("classified as %v: WireGuard must never take it for one of its messages", Classify(m))
	}
	if i, ok := ParseSessionUnknown(m); !ok || i != 0xdeadbeef {
		t.Errorf("ParseSessionUnknown = %#x, %v", i, ok)
	}
	for _, bad := range [][]byte{m[:7], append(append([]byte(nil), m...), 0), {'H', 'T', 0xE0, 0x02, 1, 2, 3, 4}, make([]byte, 8)} {
		if _, ok := ParseSessionUnknown(bad); ok {
			t.Errorf("ParseSessionUnknown(%x) took it", bad)
		}
	}
}

// TestUDPPingPong: the three small messages never pass for one another,
// nor for WireGuard's, and a pong carries the next key's tag.
func TestUDPPingPong(t *testing.T) {
	ping := AppendUDPPing(nil, 0x01020304)
	pong := AppendUDPPong(nil, 0x01020304, 0xa0b0c0d0)
	unknown := AppendSessionUnknown(nil, 0x01020304)
	for _, m := range [][]byte{ping, pong, unknown} {
		if Classify(m) != Control {
			t.Errorf("%x classified as %v", m, Classify(m))
		}
	}
	if len(ping) != UDPPingSize || len(pong) != UDPPingSize {
		t.Errorf("ping %d, pong %d bytes; want %d", len(ping), len(pong), UDPPingSize)
	}
	if i, ok := ParseUDPPing(ping); !ok || i != 0x01020304 {
		t.Errorf("the ping parsed as %#x, %v", i, ok)
	}
	if i, next, ok := ParseUDPPong(pong); !ok || i != 0x01020304 || next != 0xa0b0c0d0 {
		t.Errorf("the pong parsed as %#x, %#x, %v", i, next, ok)
	}
	for _, m := range [][]byte{pong, unknown, ping[:8], append(append([]byte(nil), ping...), 0)} {
		if _, ok := ParseUDPPing(m); ok {
			t.Errorf("ParseUDPPing took %x", m)
		}
	}
	for _, m := range [][]byte{ping, unknown, pong[:8], append(append([]byte(nil), pong...), 0)} {
		if _, _, ok := ParseUDPPong(m); ok {
			t.Errorf("ParseUDPPong took %x", m)
		}
	}
	for _, m := range [][]byte{ping, pong} {
		if _, ok := ParseSessionUnknown(m); ok {
			t.Errorf("ParseSessionUnknown took %x", m)
		}
	}
	var k [32]byte
	if NextKeyTag(k) != 0 {
		t.Errorf("the zero key's tag is %#x; want 0 (no next key)", NextKeyTag(k))
	}
	k[31] = 1
	if NextKeyTag(k) != 1 {
		t.Errorf("a key starting with 4 zero bytes has tag %#x; want 1", NextKeyTag(k))
	}
	k[0] = 7
	if NextKeyTag(k) != 7 {
		t.Errorf("tag %#x; want 7", NextKeyTag(k))
	}
}

// TestFeaturesRoundTrip: Features survive the wire, a later version's
// extra flags and fields are left out, and a short one is malformed.
func TestFeaturesRoundTrip(t *testing.T) {
	for _, f := range []Features{Ours, {MaxFrame: LegacyMaxFrame}} {
		if got, err := ParseFeatures(f.Marshal()); err != nil || got != f {
			t.Errorf("%+v came back as %+v, %v", f, got, err)
		}
	}
	if got, err := ParseFeatures([]byte{TypeFeatures, 0x20, 0x00, 0xff, 9, 9}); err != nil || got != (Features{MaxFrame: 0x2000, NoChecksum: true}) {
		t.Errorf("a later version's Features: %+v, %v", got, err)
	}
	if _, err := ParseFeatures([]byte{TypeFeatures, 1, 0}); !errors.Is(err, ErrBadControl) {
		t.Errorf("a short Features: %v, want ErrBadControl", err)
	}
	if Classify(Ours.Marshal()) != Control {
		t.Error("Features is not a control frame: WireGuard would get it")
	}
}

// The secret and ephemeral key the fuzzed HubInfo frames are MAC'd with.
var fuzzShared, fuzzEphemeral = [32]byte{1, 2, 3}, [32]byte{4, 5, 6}

// TestHubInfo: a HubInfo opens only with the secret and one of the
// ephemeral keys it was sealed with, whole and unchanged; the rest is
// refused.
func TestHubInfo(t *testing.T) {
	shared, eph, other := [32]byte{1}, [32]byte{2}, [32]byte{3}
	full := HubInfo{Next: [32]byte{7, 7}, Hub: "cellar", URL: "https://cellar.example.net/"}
	sealed := full.Seal(shared, eph)
	flip := func(i int) []byte { q := bytes.Clone(sealed); q[i] ^= 1; return q }
	for _, tc := range []struct {
		name       string
		p          []byte
		shared     [32]byte
		ephemerals [][32]byte
		want       *HubInfo
	}{
		{"with a next key", sealed, shared, [][32]byte{eph}, &full},
		{"without one", HubInfo{Hub: "a", URL: "u"}.Seal(shared, eph), shared, [][32]byte{eph}, &HubInfo{Hub: "a", URL: "u"}},
		{"ephemeral among the connection's", sealed, shared, [][32]byte{other, eph}, &full},
		{"another initiation's ephemeral", sealed, shared, [][32]byte{other}, nil},
		{"no initiation sent", sealed, shared, nil, nil},
		{"another key's secret", sealed, other, [][32]byte{eph}, nil},
		{"MAC changed", flip(1), shared, [][32]byte{eph}, nil},
		{"next key changed", flip(20), shared, [][32]byte{eph}, nil},
		{"name changed", flip(len(sealed) - 30), shared, [][32]byte{eph}, nil},
		{"cut short", sealed[:len(sealed)-1], shared, [][32]byte{eph}, nil},
		{"only a MAC", sealed[:17], shared, [][32]byte{eph}, nil},
		{"name longer than the frame", HubInfo{}.Seal(shared, eph)[:18], shared, [][32]byte{eph}, nil},
		{"control character", HubInfo{Hub: "a\x00"}.Seal(shared, eph), shared, [][32]byte{eph}, nil},
		{"another frame", Ping{}.Marshal(), shared, [][32]byte{eph}, nil},
	} {
		got, err := OpenHubInfo(tc.p, tc.shared, tc.ephemerals...)
		switch {
		case tc.want == nil && err == nil:
			t.Errorf("%s: accepted as %+v", tc.name, got)
		case tc.want != nil && (err != nil || got != *tc.want):
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, *tc.want)
		}
	}
}
