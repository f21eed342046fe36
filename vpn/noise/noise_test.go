package noise

import (
	"bytes"
	"crypto/hmac"
	"hash"
	"testing"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tai64n"

	"github.com/hubtunnel/hubtunnel/vpn"
)

func keys(t *testing.T) (vpn.PrivateKey, vpn.PrivateKey) {
	t.Helper()
	a, err := vpn.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := vpn.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

func responder(t *testing.T, k vpn.PrivateKey) *Responder {
	t.Helper()
	r, err := NewResponder(k, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestResponderReadsTheInitiatorsKeyAndClock(t *testing.T) {
	hub, relay := keys(t)
	when := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	msg, err := MakeInitiation(hub, relay.Public(), 42, Stamp(when))
	if err != nil {
		t.Fatal(err)
	}
	var mac1 device.CookieChecker
	mac1.Init(device.NoisePublicKey(relay.Public()))
	if !mac1.CheckMAC1(msg) {
		t.Errorf("the initiation's MAC1 is not keyed with the responder's key")
	}
	in, ok := responder(t, relay).ReadInitiation(msg)
	if !ok {
		t.Fatal("the responder cannot read an initiation made for it")
	}
	if in.Static != hub.Public() || !in.Timestamp.Time().Equal(when) {
		t.Errorf("read key %s at %v; want %s at %v", in.Static.Short(), in.Timestamp.Time(), hub.Public().Short(), when)
	}
}

func TestOthersCannotReadOrAlterAnInitiation(t *testing.T) {
	hub, relay := keys(t)
	_, other := keys(t)
	msg, err := MakeInitiation(hub, relay.Public(), 1, Stamp(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := responder(t, other).ReadInitiation(msg); ok {
		t.Errorf("another responder read an initiation not made for it")
	}
	for _, off := range []int{offEphemeral, offStatic, offTimestamp, offTimestamp + timestampLen - 1} {
		bad := append([]byte(nil), msg...)
		bad[off] ^= 1
		if _, ok := responder(t, relay).ReadInitiation(bad); ok {
			t.Errorf("an initiation with byte %d flipped was read as authentic", off)
		}
	}
	if _, ok := responder(t, relay).ReadInitiation(msg[:100]); ok {
		t.Errorf("a short message was read as an initiation")
	}
}

func TestTimestampsOrderAsWireGuardsDo(t *testing.T) {
	now := time.Now()
	wg := tai64n.Now()
	ours := Stamp(now)
	if d := ours.Time().Sub(now); d > 0 || d < -20*time.Millisecond {
		t.Errorf("Stamp(now) names %v, %v from now", ours.Time(), d)
	}
	if ours.After(Timestamp(wg)) || Stamp(now.Add(time.Second)).After(Timestamp(wg)) == false {
		t.Errorf("Stamp and wireguard-go's tai64n disagree about now: %x vs %x", ours, wg)
	}
	for _, c := range []struct {
		a, b time.Time
		want bool
	}{
		{now.Add(time.Second), now, true},
		{now, now.Add(time.Second), false},
		{now, now, false},
		{now.Add(-24 * time.Hour), now, false},
		{now.Add(24 * time.Hour), now, true},
	} {
		if got := Stamp(c.a).After(Stamp(c.b)); got != c.want {
			t.Errorf("Stamp(%v).After(Stamp(%v)) = %v; want %v", c.a, c.b, got, c.want)
		}
	}
}

// mapCache is a SecretCache that keeps every key it is given.
type mapCache struct {
	m          map[vpn.PublicKey][32]byte
	gets, puts int
}

func (c *mapCache) Get(k vpn.PublicKey) ([32]byte, bool) {
	c.gets++
	ss, ok := c.m[k]
	return ss, ok
}

func (c *mapCache) Put(k vpn.PublicKey, ss [32]byte) { c.puts++; c.m[k] = ss }

// TestResponderKeepsTheStaticSecret: with a cache, the responder keeps
// the DH of both static keys after the first initiation of a key that
// reads, and uses it for the next (a wrong one kept makes the read fail);
// an initiation that does not read leaves nothing in the cache.
func TestResponderKeepsTheStaticSecret(t *testing.T) {
	hub, relay := keys(t)
	c := &mapCache{m: map[vpn.PublicKey][32]byte{}}
	r, err := NewResponder(relay, c)
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	msg := func(ts time.Time) []byte {
		m, err := MakeInitiation(hub, relay.Public(), 1, Stamp(ts))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	bad := msg(when)
	bad[offTimestamp] ^= 1
	if _, ok := r.ReadInitiation(bad); ok || c.puts != 0 {
		t.Fatalf("a broken initiation read (%v) or was kept (%d puts)", ok, c.puts)
	}
	if in, ok := r.ReadInitiation(msg(when)); !ok || in.Static != hub.Public() {
		t.Fatal("the first initiation does not read")
	}
	want, _ := relay.SharedSecret(hub.Public())
	if c.puts != 1 || c.m[hub.Public()] != want {
		t.Fatalf("after the first initiation: %d puts, secret kept %v; want 1 and the DH of both keys", c.puts, c.m[hub.Public()] == want)
	}
	if in, ok := r.ReadInitiation(msg(when.Add(time.Second))); !ok || !in.Timestamp.Time().Equal(when.Add(time.Second)) || c.puts != 1 {
		t.Fatalf("the second initiation: read %v, %d puts; want it read with the kept secret", ok, c.puts)
	}
	c.m[hub.Public()] = [32]byte{1}
	if _, ok := r.ReadInitiation(msg(when.Add(2 * time.Second))); ok {
		t.Fatal("an initiation read with a wrong kept secret: the cache is not used")
	}
}

// BenchmarkReadInitiation: what the relay pays per initiation it reads,
// the first of a key (two X25519) and one whose static secret is kept
// (one).
func BenchmarkReadInitiation(b *testing.B) {
	hub, _ := vpn.GeneratePrivateKey()
	relay, _ := vpn.GeneratePrivateKey()
	msg, err := MakeInitiation(hub, relay.Public(), 1, Stamp(time.Now()))
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		cache SecretCache
	}{{"first", nil}, {"kept", &mapCache{m: map[vpn.PublicKey][32]byte{}}}} {
		b.Run(tc.name, func(b *testing.B) {
			r, err := NewResponder(relay, tc.cache)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, ok := r.ReadInitiation(msg); !ok {
					b.Fatal("does not read")
				}
			}
		})
	}
}

// The handshake's HMAC and hash, built on the stack, are crypto/hmac's
// and BLAKE2s's for every length they take.
func TestHMACAndHashAreTheLibrarys(t *testing.T) {
	buf := make([]byte, 2*blake2s.BlockSize)
	for i := range buf {
		buf[i] = byte(i*7 + 3)
	}
	for kn := 0; kn <= blake2s.BlockSize; kn++ {
		for dn := 0; dn <= blake2s.BlockSize; dn++ {
			key, data := buf[:kn], buf[blake2s.BlockSize-dn/2:][:dn]
			m := hmac.New(func() hash.Hash { h, _ := blake2s.New256(nil); return h }, key)
			m.Write(data)
			if got := hmacBlake2s(key, data); !bytes.Equal(got[:], m.Sum(nil)) {
				t.Fatalf("HMAC with a %d-byte key of %d bytes differs from crypto/hmac's", kn, dn)
			}
		}
	}
	var h [32]byte
	copy(h[:], buf[5:])
	for dn := 0; dn <= blake2s.BlockSize; dn++ {
		want := blake2s.Sum256(append(h[:len(h):len(h)], buf[:dn]...))
		if got := mixHash(h, buf[:dn]); got != want {
			t.Fatalf("hash of %d bytes differs from BLAKE2s's", dn)
		}
	}
}
