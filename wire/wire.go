// Package wire is the agent's one TCP connection to the relay, as both ends
// use it: the frame format (WireGuard messages and a few control messages,
// each behind a 2-byte big-endian length; see README.md in this directory),
// the one classifier of WireGuard messages (Classify), and Conn, the framed
// connection with its write path: batching, the keepalive filter, delayed
// ACKs, write deadlines and byte counts.
//
// It must never trust a length, a type or a string it reads: every decoder
// bounds what it accepts and returns an error instead of panicking or
// allocating what the peer asked for. It knows nothing of dialing, hubs or
// WireGuard's keys: the agent's bind (package vpn) and the relay own those.
package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxFrame is the largest payload a frame may carry: all that its 16-bit
// length can say, and WireGuard's own largest message (MaxTunnelMTU).
const MaxFrame = 65535

// LegacyMaxFrame is the frame limit of relays and agents before Features
// (and still of the relay's first frame): 8 KiB, a tunnel MTU of 8000.
const LegacyMaxFrame = 8192

// MaxTunnelMTU is the largest tunnel MTU whose packets fit a frame: a
// WireGuard transport message is the packet (padded to a multiple of 16,
// never beyond the MTU) plus 32 bytes.
const MaxTunnelMTU = MaxFrame - 32

// Frame types. WireGuard uses message types 1 to 4 as the first byte (a
// little-endian uint32, so the next three bytes are zero); control frames use
// first bytes far outside that range.
const (
	TypeHello     = 0xA0 // protocol version and software of the sender
	TypeError     = 0xA1 // a fatal error the peer should show to its user
	TypeGoingAway = 0xA2 // the relay is shutting down; reconnect after a delay

	// Enrollment (package enroll): a hub registers its key with a code,
	// on a connection of its own that carries nothing else.
	TypeEnrollRequest   = 0xA3 // agent: the code's ID and a nonce
	TypeEnrollChallenge = 0xA4 // relay: its key and nonce, MAC'd with the code
	TypeEnrollRegister  = 0xA5 // agent: the hub's key, MAC'd with the code
	TypeEnrollResult    = 0xA6 // relay: the hub's name and addresses, MAC'd
	TypePing            = 0xA7 // the relay asks whether the connection is alive
	TypePong            = 0xA8 // the agent's answer to a Ping, at once
	TypeFeatures        = 0xA9 // what the sender accepts; after its Hello
	TypeHubInfo         = 0xAA // relay: its next key, the hub's name and URL, MAC'd
)

// ProtocolVersion is sent in every Hello.
const ProtocolVersion = 1

// Errors returned by the decoders. They are wrapped with details.
var (
	ErrEmptyFrame    = errors.New("wire: empty frame")
	ErrFrameTooLarge = errors.New("wire: frame too large")
	ErrBadControl    = errors.New("wire: malformed control frame")
)

// AppendFrame appends payload as one frame to dst.
func AppendFrame(dst, payload []byte) ([]byte, error) {
	if len(payload) == 0 {
		return dst, ErrEmptyFrame
	}
	if len(payload) > MaxFrame {
		return dst, fmt.Errorf("%w: %d bytes (max %d)", ErrFrameTooLarge, len(payload), MaxFrame)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(payload)))
	return append(dst, payload...), nil
}

// Hello is the first frame each side sends after the TCP (and, where used,
// proxy and TLS) connection is up.
type Hello struct {
	Version uint8 // ProtocolVersion of the sender
	// Key is the sender's WireGuard public key. The relay uses the agent's
	// claim only to tell which hubs have a live connection; it proves
	// nothing, since WireGuard authenticates every packet itself.
	Key      [32]byte
	Software string // e.g. "hubtunnel/0.1.0 (CCU3 3.79.6 armv7)"; printable, at most 200 bytes
}

// maxText bounds every string in a control frame.
const maxText = 200

// Marshal returns the Hello as a frame payload.
func (h Hello) Marshal() []byte {
	b := []byte{TypeHello, h.Version}
	b = append(b, h.Key[:]...)
	return append(b, clip(h.Software)...)
}

// ParseHello decodes a Hello payload.
func ParseHello(p []byte) (Hello, error) {
	if len(p) < 2+32 || p[0] != TypeHello {
		return Hello{}, fmt.Errorf("%w: hello", ErrBadControl)
	}
	s, err := text(p[2+32:])
	if err != nil {
		return Hello{}, fmt.Errorf("hello: %w", err)
	}
	h := Hello{Version: p[1], Software: s}
	copy(h.Key[:], p[2:])
	return h, nil
}

// Features says what the sender of a Hello can take beyond protocol 1 as
// it first was. Each side sends it right after its Hello; a peer that
// sends none (agents and relays before it, which ignore the frame as an
// unknown control frame) takes frames up to LegacyMaxFrame and verifies
// the checksums of the packets inside the tunnel.
type Features struct {
	// MaxFrame is the largest frame the sender reads. A frame is never
	// larger than a WireGuard message at the larger of both tunnel MTUs,
	// and TCP's MSS keeps segments within the smaller (package netstack
	// speaks nothing else that could be larger), so this is the record of
	// what the sender takes, not a limit either side has to enforce.
	MaxFrame uint16
	// NoChecksum: the sender does not verify TCP checksums of the packets
	// it receives through the tunnel (WireGuard's AEAD has authenticated
	// each of them), so the receiver may leave them out.
	NoChecksum bool
}

const featureNoChecksum = 1 << 0

// Marshal returns the Features as a frame payload: A9, max frame (uint16
// big endian), flags (1 byte). Later versions may append fields; a decoder
// ignores what follows.
func (f Features) Marshal() []byte {
	b := binary.BigEndian.AppendUint16([]byte{TypeFeatures}, f.MaxFrame)
	var flags byte
	if f.NoChecksum {
		flags |= featureNoChecksum
	}
	return append(b, flags)
}

// ParseFeatures decodes a Features payload. Unknown flags and trailing
// bytes are a later version's and left out.
func ParseFeatures(p []byte) (Features, error) {
	if len(p) < 4 || p[0] != TypeFeatures {
		return Features{}, fmt.Errorf("%w: features", ErrBadControl)
	}
	return Features{MaxFrame: binary.BigEndian.Uint16(p[1:]), NoChecksum: p[3]&featureNoChecksum != 0}, nil
}

// Ours are the Features of this version: frames up to MaxFrame, and no
// checksum verified inside the tunnel (package netstack).
var Ours = Features{MaxFrame: MaxFrame, NoChecksum: true}

// Error codes carried in an Error frame.
const (
	CodeUnknown    = 0
	CodeVersion    = 1 // protocol version not supported
	CodeOverloaded = 2 // relay is at capacity; retry later
	CodeWrongKey   = 3 // the agent's handshakes are for another relay key: its relay_public_key is wrong
	// CodeNotRegistered: the relay serves no hub with the agent's key (not
	// added or enrolled yet, removed, or disabled); the agent asks again
	// within a minute, then less often.
	CodeNotRegistered = 4
	// CodeClone: another connection with the hub's key is live (the relay
	// pinged it and it answered): a copy of the hub, e.g. a restored backup
	// on a second device.
	CodeClone = 5

	// Enrollment refusals (package enroll).
	CodeEnrollUnknown  = 16 // the relay knows no such code: another relay's, or removed
	CodeEnrollUsed     = 17 // the code was used already
	CodeEnrollExpired  = 18 // the code has expired
	CodeEnrollLimit    = 19 // too many attempts from this address; try later
	CodeEnrollKeyTaken = 20 // the hub's key is another hub's already
	CodeEnrollName     = 21 // the hub's name is taken (since the code was made)
)

// Error tells the peer why the connection is being closed.
type Error struct {
	Code    uint8
	Message string // for a log line and the hub owner's panel; printable, at most 200 bytes
}

func (e Error) Marshal() []byte {
	b := []byte{TypeError, e.Code}
	return append(b, clip(e.Message)...)
}

func (e Error) Error() string { return fmt.Sprintf("relay error %d: %s", e.Code, e.Message) }

// ParseError decodes an Error payload.
func ParseError(p []byte) (Error, error) {
	if len(p) < 2 || p[0] != TypeError {
		return Error{}, fmt.Errorf("%w: error", ErrBadControl)
	}
	s, err := text(p[2:])
	if err != nil {
		return Error{}, fmt.Errorf("error frame: %w", err)
	}
	return Error{Code: p[1], Message: s}, nil
}

// GoingAway announces a relay shutdown. The agent waits RetryAfterMillis
// (plus jitter) before it reconnects, so a restarting relay is not stormed.
type GoingAway struct {
	RetryAfterMillis uint16
}

func (g GoingAway) Marshal() []byte {
	return binary.BigEndian.AppendUint16([]byte{TypeGoingAway}, g.RetryAfterMillis)
}

// ParseGoingAway decodes a GoingAway payload.
func ParseGoingAway(p []byte) (GoingAway, error) {
	if len(p) != 3 || p[0] != TypeGoingAway {
		return GoingAway{}, fmt.Errorf("%w: going-away", ErrBadControl)
	}
	return GoingAway{RetryAfterMillis: binary.BigEndian.Uint16(p[1:])}, nil
}

// Clip cuts s to the length a control frame's text may have.
func Clip(s string) string { return clip(s) }

// Text checks a peer's text as the control frames' decoders do: UTF-8,
// printable, at most 200 bytes.
func Text(b []byte) (string, error) { return text(b) }

// Ping asks the agent to prove that a connection is alive: it answers at
// once with a Pong carrying the same token. The relay pings a hub's
// connection when a second one with the same key arrives (a clone, or the
// hub itself reconnecting after its old connection died without a word).
type Ping struct {
	Token [8]byte
}

func (p Ping) Marshal() []byte { return append([]byte{TypePing}, p.Token[:]...) }

// ParsePing decodes a Ping payload.
func ParsePing(p []byte) (Ping, error) {
	if len(p) != 9 || p[0] != TypePing {
		return Ping{}, fmt.Errorf("%w: ping", ErrBadControl)
	}
	return Ping{Token: [8]byte(p[1:])}, nil
}

// Pong answers a Ping with its token and a MAC of it (PongMAC) keyed with
// the static Diffie-Hellman secret of the hub's and the relay's WireGuard
// keys: only the holder of the hub's private key can answer, so a
// connection someone else holds open (with a replayed handshake
// initiation, say) cannot pass for the hub's live one.
type Pong struct {
	Token [8]byte
	MAC   [16]byte
}

func (p Pong) Marshal() []byte {
	b := append([]byte{TypePong}, p.Token[:]...)
	return append(b, p.MAC[:]...)
}

// ParsePong decodes a Pong payload. A Pong without its MAC (agents before
// it) is an error: it proves nothing.
func ParsePong(p []byte) (Pong, error) {
	if len(p) != 25 || p[0] != TypePong {
		return Pong{}, fmt.Errorf("%w: pong", ErrBadControl)
	}
	return Pong{Token: [8]byte(p[1:9]), MAC: [16]byte(p[9:])}, nil
}

// PongMAC is a Pong's MAC of token: HMAC-SHA-256 keyed with shared (the
// X25519 of the hub's private key and the relay's public key, or the
// other way round), over a label and the token, cut to 16 bytes.
func PongMAC(shared [32]byte, token [8]byte) [16]byte {
	m := hmac.New(sha256.New, shared[:])
	m.Write([]byte("hubtunnel pong v1"))
	m.Write(token[:])
	return [16]byte(m.Sum(nil))
}

func clip(s string) string {
	if len(s) > maxText {
		s = s[:maxText]
	}
	return s
}

// text validates a peer-supplied string before it may reach a log or a page.
func text(b []byte) (string, error) {
	if len(b) > maxText {
		return "", fmt.Errorf("%w: text of %d bytes", ErrBadControl, len(b))
	}
	if !utf8.Valid(b) {
		return "", fmt.Errorf("%w: text is not UTF-8", ErrBadControl)
	}
	for _, r := range string(b) {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%w: control character in text", ErrBadControl)
		}
	}
	return string(b), nil
}
