package noise

import (
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"

	"github.com/hubtunnel/hubtunnel/vpn"
)

// FuzzReadInitiation: the relay reads every first initiation a stranger
// sends; whatever the bytes, ReadInitiation answers false or a key and a
// timestamp, never a panic, and only the initiation made with the hub's
// key reads as that key.
func FuzzReadInitiation(f *testing.F) {
	relay, _ := vpn.GeneratePrivateKey()
	hub, _ := vpn.GeneratePrivateKey()
	msg, err := MakeInitiation(hub, relay.Public(), 7, Stamp(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)))
	if err != nil {
		f.Fatal(err)
	}
	r, err := NewResponder(relay, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(msg)
	f.Add(msg[:100])
	f.Add(make([]byte, 148))
	f.Fuzz(func(t *testing.T, b []byte) {
		in, ok := r.ReadInitiation(b)
		if ok && in.Static == hub.Public() && string(b) != string(msg) {
			// The ephemeral key, the static key and the timestamp (bytes
			// 8–116) are authenticated: a message that differs there and
			// still reads as the hub's would be a forgery of the AEAD. (The
			// type, the sender index and the MACs are not covered by it.)
			if len(b) == len(msg) && string(b[8:116]) != string(msg[8:116]) {
				t.Fatalf("a changed initiation still reads as the hub's")
			}
		}
	})
}

// FuzzReadResponse: the light hubs read whatever comes from the relay's
// address as a possible answer to their handshake; whatever the bytes,
// ReadResponse answers false, never a panic: only the responder, with
// the handshake's ephemeral key, can make an answer that reads.
func FuzzReadResponse(f *testing.F) {
	hub, _ := vpn.GeneratePrivateKey()
	relay, _ := vpn.GeneratePrivateKey()
	var macs device.CookieGenerator
	macs.Init(device.NoisePublicKey(relay.Public()))
	hs, _, err := Initiate(hub, relay.Public(), 7, Stamp(time.Now()), &macs)
	if err != nil {
		f.Fatal(err)
	}
	resp := make([]byte, ResponseLen)
	resp[0] = device.MessageResponseType
	resp[8] = 7
	f.Add(resp)
	f.Add(resp[:50])
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, ok := hs.ReadResponse(b); ok {
			// A forgery of the AEAD with the responder's ephemeral key
			// unknown: cannot be found by a fuzzer.
			t.Fatalf("random bytes read as the responder's answer: %x", b)
		}
	})
}
