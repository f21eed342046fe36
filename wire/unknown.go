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
	b = append(b, sessionUnknownMagic[:]...)
	return binary.LittleEndian.AppendUint32(b, i)
}

// ParseSessionUnknown returns the receiver index p names, if p is such a
// message.
func ParseSessionUnknown(p []byte) (uint32, bool) {
	if len(p) != SessionUnknownSize || [4]byte(p[:4]) != sessionUnknownMagic {
		return 0, false
	}
	return binary.LittleEndian.Uint32(p[4:]), true
}
