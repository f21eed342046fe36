package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
)

// HubInfo is what the relay tells a hub's agent about itself and the hub,
// once per connection, in the same write as its answer to the connection's
// first handshake initiation: its next key (hubrelay key rotate), which
// the agent pins so that a relay key change strands no hub, and what the
// relay calls the hub now (hubrelay hub rename). Before it, the agent
// asked for the same through the tunnel at every connect, an HTTP request
// that cost 2.2 KB on the wire.
//
// The frame is not inside WireGuard, so its MAC is what makes it the
// relay's: keyed with the static Diffie-Hellman secret of the hub's key and
// the relay key the agent has pinned (never the one a Hello names), over
// the ephemeral key of the agent's own handshake initiation on this
// connection, so a HubInfo recorded on one connection (an old next key,
// say) is worth nothing on another.
type HubInfo struct {
	Next [32]byte // the relay's next key; zero for none
	Hub  string   // the hub's name at the relay; printable, at most 200 bytes
	URL  string   // the hub's URL; printable, at most 200 bytes
}

const (
	hubInfoMACSize = 16
	hubInfoNext    = 1 << 0 // flags: a next key follows
)

// Seal returns h as a frame payload: AA, MAC (16), flags (1), the next
// key (32, when flag 0x01), the hub's name (1 byte of length, then the
// name), the URL (the rest). shared is the static secret of the hub's and
// the relay's keys; ephemeral that of the initiation the relay answers.
func (h HubInfo) Seal(shared, ephemeral [32]byte) []byte {
	hub, url := clip(h.Hub), clip(h.URL)
	b := make([]byte, 1+hubInfoMACSize, 1+hubInfoMACSize+1+32+1+len(hub)+len(url))
	b[0] = TypeHubInfo
	if h.Next != ([32]byte{}) {
		b = append(b, hubInfoNext)
		b = append(b, h.Next[:]...)
	} else {
		b = append(b, 0)
	}
	b = append(b, byte(len(hub)))
	b = append(b, hub...)
	b = append(b, url...)
	mac := hubInfoMAC(shared, ephemeral, b[1+hubInfoMACSize:])
	copy(b[1:], mac[:])
	return b
}

// OpenHubInfo decodes a HubInfo payload and checks its MAC against shared
// and each of ephemerals (the agent's initiations on this connection: the
// relay answers one of them). A malformed frame, or one whose MAC fits
// none, is an error and tells nothing.
func OpenHubInfo(p []byte, shared [32]byte, ephemerals ...[32]byte) (HubInfo, error) {
	const head = 1 + hubInfoMACSize
	if len(p) < head+2 || p[0] != TypeHubInfo {
		return HubInfo{}, fmt.Errorf("%w: hub info", ErrBadControl)
	}
	body := p[head:]
	ok := false
	for _, e := range ephemerals {
		mac := hubInfoMAC(shared, e, body)
		if hmac.Equal(mac[:], p[1:head]) {
			ok = true
			break
		}
	}
	if !ok {
		return HubInfo{}, fmt.Errorf("%w: hub info: MAC does not prove the pinned relay key", ErrBadControl)
	}
	var h HubInfo
	rest := body[1:]
	if body[0]&hubInfoNext != 0 {
		if len(rest) < 32+1 {
			return HubInfo{}, fmt.Errorf("%w: hub info: short next key", ErrBadControl)
		}
		h.Next = [32]byte(rest)
		rest = rest[32:]
	}
	n := int(rest[0])
	if len(rest) < 1+n {
		return HubInfo{}, fmt.Errorf("%w: hub info: name of %d bytes in %d", ErrBadControl, n, len(rest)-1)
	}
	var err error
	if h.Hub, err = text(rest[1 : 1+n]); err != nil {
		return HubInfo{}, fmt.Errorf("hub info: name: %w", err)
	}
	if h.URL, err = text(rest[1+n:]); err != nil {
		return HubInfo{}, fmt.Errorf("hub info: url: %w", err)
	}
	return h, nil
}

// hubInfoMAC is HMAC-SHA-256 keyed with shared, over a label, the
// initiation's ephemeral key and the frame after its MAC, cut to 16 bytes.
func hubInfoMAC(shared, ephemeral [32]byte, body []byte) [hubInfoMACSize]byte {
	m := hmac.New(sha256.New, shared[:])
	m.Write([]byte("hubtunnel hubinfo v1"))
	m.Write(ephemeral[:])
	m.Write(body)
	return [hubInfoMACSize]byte(m.Sum(nil))
}
