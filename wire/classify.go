package wire

import (
	"encoding/binary"

	"golang.zx2c4.com/wireguard/device"
)

// Kind is what a frame's payload is, as far as the transport needs to know.
// Classify is the one place that looks at WireGuard's message types.
type Kind uint8

const (
	// Control is anything that is not a WireGuard message: a control frame
	// (Hello, Error, GoingAway, or one of a later version), which the
	// receiver handles or ignores, never WireGuard.
	Control     Kind = iota
	Initiation       // a handshake initiation
	Response         // a handshake response: its sender has authenticated the initiator
	CookieReply      // a cookie reply (WireGuard under load)
	Keepalive        // a transport message without a packet
	Data             // a transport message carrying a packet: WireGuard writes it to the TUN
	// Runt has a WireGuard message type but is shorter than that type's
	// message. It goes to WireGuard like the others, which drops it.
	Runt
)

// Classify tells what p is: WireGuard's first four bytes are its message
// type as a little-endian uint32, so a WireGuard message starts with 1–4
// and three zero bytes.
func Classify(p []byte) Kind {
	if len(p) < 4 || p[1] != 0 || p[2] != 0 || p[3] != 0 {
		return Control
	}
	switch p[0] {
	case device.MessageInitiationType:
		return sized(p, device.MessageInitiationSize, Initiation)
	case device.MessageResponseType:
		return sized(p, device.MessageResponseSize, Response)
	case device.MessageCookieReplyType:
		return sized(p, device.MessageCookieReplySize, CookieReply)
	case device.MessageTransportType:
		switch {
		case len(p) > device.MessageKeepaliveSize:
			return Data
		case len(p) == device.MessageKeepaliveSize:
			return Keepalive
		}
		return Runt
	}
	return Control
}

func sized(p []byte, size int, k Kind) Kind {
	if len(p) < size {
		return Runt
	}
	return k
}

// IsWireGuard reports whether k is a WireGuard message, to be handed to
// WireGuard rather than handled as a control frame.
func (k Kind) IsWireGuard() bool { return k != Control }

// Index is the session index in bytes 4–8 of a message Classify calls
// Initiation, Response, CookieReply, Keepalive or Data: the sender's index in
// a handshake message, the receiver's in a cookie reply or transport message.
func Index(p []byte) uint32 {
	return binary.LittleEndian.Uint32(p[device.MessageTransportOffsetReceiver:])
}

// Ephemeral is the unencrypted ephemeral public key of a message Classify
// calls Initiation (its bytes 8–40): new for every handshake, so whatever
// is bound to it (a HubInfo's MAC) cannot be replayed into another.
func Ephemeral(p []byte) [32]byte {
	const off = device.MessageTransportOffsetReceiver + 4 // type, sender index
	return [32]byte(p[off : off+32])
}
