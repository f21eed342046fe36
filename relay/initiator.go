package relay

import (
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/vpn/noise"
)

// initiationLen is the size of a WireGuard handshake initiation.
const initiationLen = noise.InitiationLen

// initiatorKey returns the static public key an initiation message was
// sent with, which only the holder of the responder's private key (the
// relay) can read; false when msg is no initiation for this relay. The
// hub a connection is for is the peer WireGuard authenticates, not the
// key its Hello names. The Noise steps are package noise's; clock.go also
// reads the initiation's timestamp.
func initiatorKey(relay vpn.PrivateKey, relayPub vpn.PublicKey, msg []byte) (vpn.PublicKey, bool) {
	in, ok := noise.ReadInitiation(relay, relayPub, msg)
	return in.Static, ok
}
