package noise

import (
	"testing"
	"time"

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
	in, ok := ReadInitiation(relay, relay.Public(), msg)
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
	if _, ok := ReadInitiation(other, other.Public(), msg); ok {
		t.Errorf("another responder read an initiation not made for it")
	}
	for _, off := range []int{offEphemeral, offStatic, offTimestamp, offTimestamp + timestampLen - 1} {
		bad := append([]byte(nil), msg...)
		bad[off] ^= 1
		if _, ok := ReadInitiation(relay, relay.Public(), bad); ok {
			t.Errorf("an initiation with byte %d flipped was read as authentic", off)
		}
	}
	if _, ok := ReadInitiation(relay, relay.Public(), msg[:100]); ok {
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
