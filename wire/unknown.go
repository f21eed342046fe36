package wire

import "encoding/binary"

// SessionUnknown is what the relay sends a UDP hub whose transport message
// names a session the relay does not have: after a relay restart every
// UDP hub's sessions are gone, and an idle hub, which sends only
// keepalives, would not start a handshake of its own until its session
// grew two minutes old (WireGuard's REKEY_AFTER_TIME). The message asks for
// a new handshake now.
//
// It is 8 bytes: 'H' 'T' 0xE0 0x01 (no WireGuard message starts so, so
// plain WireGuard drops it as an unknown type) and the receiver index of
// the transport message that named the unknown session, little-endian.
// The index is the relay's answer to that very message: the hub takes the
// hint only for the session it sends on now, whose index someone off the
// path cannot know. Nothing in it is secret, and it is smaller than the
// smallest transport message (32 bytes), so the relay cannot be made to
// send more than it received.
const SessionUnknownSize = 8

var sessionUnknownMagic = [4]byte{'H', 'T', 0xE0, 0x01}

// AppendSessionUnknown appends the message for receiver index i to b.
func AppendSessionUnknown(b []byte, i uint32) []byte {
	return appendIndexed(b, sessionUnknownMagic, i)
}

// ParseSessionUnknown returns the receiver index p names, if p is such a
// message.
func ParseSessionUnknown(p []byte) (uint32, bool) {
	return parseIndexed(p, sessionUnknownMagic)
}

// UDPPing and UDPPong keep an idle UDP hub's NAT mapping open and tell the agent
// that its relay is there, without WireGuard: a WireGuard keepalive on a
// session older than two minutes makes the initiator handshake
// (REKEY_AFTER_TIME), so an idle hub of keepalives handshook 30 times an
// hour for nothing, and 100,000 of them kept a relay's core busy. Once a
// relay answers its pings, the agent turns its persistent keepalive off
// and pings instead (agent's udpTransport); a plain WireGuard server drops
// them, and the agent stays with keepalives.
//
// Each is 12 bytes: 'H' 'T' 0xE0 and 0x02 (a ping) or 0x03 (a pong), a
// receiver index, little-endian (in a ping that of the agent's latest
// transport messages, the relay's index of the session; in a pong the
// ping's), and 4 bytes: zero in a ping, in a pong the first 4 bytes of
// the relay's next key (zero: none), so that a hub that neither
// handshakes nor connects learns that there is one to ask for (a hub
// must pin it before the relay switches to it). The relay answers only a
// ping from the address it has for the hub with a session it knows, so a
// pong goes nowhere a ping did not come from and is never larger: the
// relay is no reflector, and someone off the path, who knows neither,
// can neither make a hub count as there nor be answered. An agent takes
// only a pong for the index it pings with.
const UDPPingSize = 12

var (
	pingMagic = [4]byte{'H', 'T', 0xE0, 0x02}
	pongMagic = [4]byte{'H', 'T', 0xE0, 0x03}
)

// AppendUDPPing appends a ping for receiver index i to b.
func AppendUDPPing(b []byte, i uint32) []byte {
	return binary.LittleEndian.AppendUint32(appendIndexed(b, pingMagic, i), 0)
}

// AppendUDPPong appends the pong to a ping for index i to b; next is
// NextKeyTag of the relay's next key.
func AppendUDPPong(b []byte, i, next uint32) []byte {
	return binary.LittleEndian.AppendUint32(appendIndexed(b, pongMagic, i), next)
}

// ParseUDPPing returns the index of ping p, if p is one.
func ParseUDPPing(p []byte) (uint32, bool) {
	if len(p) != UDPPingSize {
		return 0, false
	}
	return parseIndexed(p[:8], pingMagic)
}

// ParseUDPPong returns the index of pong p and its next key's tag, if p is
// one.
func ParseUDPPong(p []byte) (i, next uint32, ok bool) {
	if len(p) != UDPPingSize {
		return 0, 0, false
	}
	i, ok = parseIndexed(p[:8], pongMagic)
	return i, binary.LittleEndian.Uint32(p[8:]), ok
}

// NextKeyTag is what a pong says of the relay's next key k: its first 4
// bytes, 0 for none (the zero key); a key whose first 4 bytes are zero is
// 1, so that it still says there is one.
func NextKeyTag(k [32]byte) uint32 {
	if k == ([32]byte{}) {
		return 0
	}
	return max(binary.LittleEndian.Uint32(k[:4]), 1)
}

func appendIndexed(b []byte, magic [4]byte, i uint32) []byte {
	b = append(b, magic[:]...)
	return binary.LittleEndian.AppendUint32(b, i)
}

func parseIndexed(p []byte, magic [4]byte) (uint32, bool) {
	if len(p) != 8 || [4]byte(p[:4]) != magic {
		return 0, false
	}
	return binary.LittleEndian.Uint32(p[4:]), true
}
