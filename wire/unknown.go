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
// Each is 8 bytes: 'H' 'T' 0xE0 and 0x02 (a ping) or 0x03 (a pong), and a
// receiver index, little-endian: in a Ping that of the agent's latest
// transport messages (the relay's index of the session), in a Pong the
// Ping's. The relay answers only a Ping from the address it has for the
// hub with a session it knows, so a Pong goes nowhere a Ping did not come
// from and is never larger: the relay is no reflector, and someone off the
// path, who knows neither, can neither make a hub count as there nor be
// answered. An agent takes only a Pong for the index it pings with.
const UDPPingSize = 8

var (
	pingMagic = [4]byte{'H', 'T', 0xE0, 0x02}
	pongMagic = [4]byte{'H', 'T', 0xE0, 0x03}
)

// AppendUDPPing appends a Ping for receiver index i to b.
func AppendUDPPing(b []byte, i uint32) []byte { return appendIndexed(b, pingMagic, i) }

// AppendUDPPong appends the Pong to a Ping for index i to b.
func AppendUDPPong(b []byte, i uint32) []byte { return appendIndexed(b, pongMagic, i) }

// ParseUDPPing returns the index of Ping p, if p is one.
func ParseUDPPing(p []byte) (uint32, bool) { return parseIndexed(p, pingMagic) }

// ParseUDPPong returns the index of Pong p, if p is one.
func ParseUDPPong(p []byte) (uint32, bool) { return parseIndexed(p, pongMagic) }

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
