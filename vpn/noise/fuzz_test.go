package noise

import (
	"testing"
	"time"

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
