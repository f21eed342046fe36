package relay

import "github.com/hubtunnel/hubtunnel/vpn/noise"

// initiationLen is the size of a WireGuard handshake initiation. The
// relay reads the static key an initiation was sent with, which only the
// holder of the relay's private key can read, with Server.initiations (a
// noise.Responder): the hub a connection is for is the peer WireGuard
// authenticates, not the key its Hello names; clock.go also reads the
// initiation's timestamp.
const initiationLen = noise.InitiationLen
