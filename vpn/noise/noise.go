// Package noise reads and makes WireGuard handshake initiations outside
// wireguard-go: the first message of Noise IK (the WireGuard paper,
// section 5.4.2; wireguard-go's device/noise-protocol.go), as far as its
// encrypted static key and TAI64N timestamp.
//
// The relay reads an initiation before WireGuard does, to learn which hub
// sent it (the Hello only claims one) and how its timestamp compares with
// the last it accepted (relay/clock.go); tests make initiations with a
// chosen timestamp. The relay never completes a handshake with it and
// holds no session keys; the package keeps no state but the caller's
// SecretCache: WireGuard stays the one that authenticates a peer. Only the bench's light UDP hubs (bench/lightfleet.go)
// play the initiator to the end (Initiator, Handshake, Keys): a hub that does nothing
// but keep its session costs them a socket and a few hundred bytes, where a
// wireguard-go device costs ~160 KB.
package noise

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.zx2c4.com/wireguard/device"

	"github.com/hubtunnel/hubtunnel/vpn"
)

const (
	construction = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
	identifier   = "WireGuard v1 zx2c4 Jason@zx2c4.com"

	// InitiationLen is the size of a handshake initiation: type, sender,
	// ephemeral, static, timestamp, mac1, mac2.
	InitiationLen = 148
	offSender     = 4
	offEphemeral  = 8
	offStatic     = offEphemeral + 32
	staticLen     = 32 + chacha20poly1305.Overhead
	offTimestamp  = offStatic + staticLen
	timestampLen  = TimestampLen + chacha20poly1305.Overhead
)

// Timestamp is a TAI64N label as WireGuard's initiator puts it in every
// initiation: 8 bytes of seconds (offset by 2^62 + 10), 4 of nanoseconds,
// big-endian, so newer is greater byte by byte. A responder accepts an
// initiation only when its timestamp is newer than the newest it accepted
// from that key (replay protection).
type Timestamp [TimestampLen]byte

// TimestampLen is the size of a TAI64N label.
const TimestampLen = 12

const taiBase = uint64(0x400000000000000a)

// Stamp is t as WireGuard labels it (wireguard-go whitens the nanoseconds
// to about 16 ms, so that a timestamp does not tell when exactly a hub
// sent it; so does Stamp).
func Stamp(t time.Time) Timestamp {
	var ts Timestamp
	binary.BigEndian.PutUint64(ts[:8], taiBase+uint64(t.Unix()))
	binary.BigEndian.PutUint32(ts[8:], uint32(t.Nanosecond())&^(1<<24-1))
	return ts
}

// After reports whether ts is newer than u, as WireGuard's replay check
// compares them.
func (ts Timestamp) After(u Timestamp) bool {
	for i := range ts {
		if ts[i] != u[i] {
			return ts[i] > u[i]
		}
	}
	return false
}

// Time is the wall time ts names.
func (ts Timestamp) Time() time.Time {
	return time.Unix(int64(binary.BigEndian.Uint64(ts[:8])-taiBase), int64(binary.BigEndian.Uint32(ts[8:])))
}

// Initiation is what the responder can read of a handshake initiation.
type Initiation struct {
	Static    vpn.PublicKey // the initiator's key
	Timestamp Timestamp     // its clock when it sent it
}

// Responder reads the initiations made for one key pair. It parses the
// private key once: x/crypto's curve25519.X25519 parses its scalar on
// every call, and crypto/ecdh computes the public key when it parses one,
// so each X25519 cost two scalar multiplications (70 µs here, not 35), and
// reading initiations was 30 % of a relay's CPU with 60,000 UDP hubs.
type Responder struct {
	priv  *ecdh.PrivateKey
	c, h  [32]byte    // the chaining key and hash every initiation starts from
	cache SecretCache // nil: none
}

// SecretCache keeps the DH of the responder's and an initiator's static
// keys, the same for every initiation of that initiator (WireGuard's
// responder keeps it per peer). Put is called only with a secret that
// opened an initiation's timestamp; a cache should keep it only for keys
// it knows, so that strangers cannot fill it.
type SecretCache interface {
	Get(static vpn.PublicKey) ([32]byte, bool)
	Put(static vpn.PublicKey, secret [32]byte)
}

// NewResponder prepares priv for ReadInitiation, with cache (or nil).
func NewResponder(priv vpn.PrivateKey, cache SecretCache) (*Responder, error) {
	k, err := ecdh.X25519().NewPrivateKey(priv[:])
	if err != nil {
		return nil, err
	}
	r := &Responder{priv: k, cache: cache}
	r.c, r.h = initial(vpn.PublicKey(k.PublicKey().Bytes()))
	return r, nil
}

// dh is X25519 of the responder's key and pub; false for a low-order
// point, as WireGuard refuses it.
func (r *Responder) dh(pub []byte) ([32]byte, bool) {
	ss, err := dh(r.priv, pub)
	return ss, err == nil
}

// ReadInitiation decrypts the initiator's static key and timestamp from
// msg, as WireGuard's responder does before its replay check; false when
// msg is no initiation for this responder. Both are authentic when it
// returns true: the timestamp's AEAD is keyed with the DH of both static
// keys, which only the initiator's key holder (or the responder) can make.
func (r *Responder) ReadInitiation(msg []byte) (Initiation, bool) {
	if len(msg) != InitiationLen || msg[0] != device.MessageInitiationType {
		return Initiation{}, false
	}
	e := msg[offEphemeral : offEphemeral+32]
	c := kdf1(r.c, e)
	h := mixHash(r.h, e)
	ss, ok := r.dh(e)
	if !ok {
		return Initiation{}, false
	}
	c, key := kdf2(c, ss[:])
	var in Initiation
	sealedStatic := msg[offStatic : offStatic+staticLen]
	if _, err := open(key, h, in.Static[:0], sealedStatic); err != nil {
		return Initiation{}, false
	}
	h = mixHash(h, sealedStatic)
	cached := false
	if r.cache != nil {
		ss, cached = r.cache.Get(in.Static)
	}
	if !cached {
		if ss, ok = r.dh(in.Static[:]); !ok {
			return Initiation{}, false
		}
	}
	_, key = kdf2(c, ss[:])
	if _, err := open(key, h, in.Timestamp[:0], msg[offTimestamp:offTimestamp+timestampLen]); err != nil {
		return Initiation{}, false
	}
	if r.cache != nil && !cached {
		r.cache.Put(in.Static, ss)
	}
	return in, true
}

// MakeInitiation makes a handshake initiation from priv to responder with
// timestamp ts and sender index sender, MAC1 included (no MAC2: the
// responder is not under load). It is what WireGuard's initiator sends,
// but with any clock: tests use it to play a hub whose clock was ahead, or
// to replay an old initiation. Its ephemeral key is thrown away, so the
// handshake it starts can never complete.
func MakeInitiation(priv vpn.PrivateKey, responder vpn.PublicKey, sender uint32, ts Timestamp) ([]byte, error) {
	var macs device.CookieGenerator
	macs.Init(device.NoisePublicKey(responder))
	_, msg, err := Initiate(priv, responder, sender, ts, &macs)
	return msg, err
}

// Handshake is the initiator's side of a handshake it started: what it
// needs to read the responder's answer.
type Handshake struct {
	in     *Initiator
	eph    *ecdh.PrivateKey
	c, h   [32]byte
	sender uint32
}

// Initiator is one key pair's side of handshakes with one responder, with
// what every handshake of that pair shares worked out once: the parsed
// private key, its public key and the DH of both static keys, as
// wireguard-go's initiator keeps them per peer. A handshake then costs
// four scalar multiplications (the ephemeral key and three DH), where
// x/crypto's curve25519.X25519 would make ten of them: it parses its
// scalar through crypto/ecdh at every call, which computes the public key
// each time.
type Initiator struct {
	priv      *ecdh.PrivateKey
	pub       vpn.PublicKey
	responder vpn.PublicKey
	ss        [32]byte // DH of both static keys
	c, h      [32]byte // the chaining key and hash every initiation starts from
}

// NewInitiator prepares priv's handshakes with responder; an error for a
// responder key that is a low-order point.
func NewInitiator(priv vpn.PrivateKey, responder vpn.PublicKey) (*Initiator, error) {
	k, err := ecdh.X25519().NewPrivateKey(priv[:])
	if err != nil {
		return nil, err
	}
	in := &Initiator{priv: k, pub: vpn.PublicKey(k.PublicKey().Bytes()), responder: responder}
	if in.ss, err = dh(k, responder[:]); err != nil {
		return nil, err
	}
	in.c, in.h = initial(responder)
	return in, nil
}

// Initiate starts a handshake from priv to responder, as WireGuard's
// initiator does (message 1 of Noise IKpsk2, no pre-shared key), with
// timestamp ts and sender index sender. macs adds MAC1, and MAC2 once it
// holds a cookie from the responder (device.CookieGenerator.ConsumeReply).
// It is NewInitiator and Initiator.Initiate at once.
func Initiate(priv vpn.PrivateKey, responder vpn.PublicKey, sender uint32, ts Timestamp, macs *device.CookieGenerator) (*Handshake, []byte, error) {
	in, err := NewInitiator(priv, responder)
	if err != nil {
		return nil, nil, err
	}
	return in.Initiate(sender, ts, macs)
}

// Initiate starts a handshake (see the function Initiate).
func (in *Initiator) Initiate(sender uint32, ts Timestamp, macs *device.CookieGenerator) (*Handshake, []byte, error) {
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	hs := &Handshake{in: in, eph: eph, sender: sender}
	ephPub := eph.PublicKey().Bytes()
	msg := make([]byte, InitiationLen)
	binary.LittleEndian.PutUint32(msg, device.MessageInitiationType)
	binary.LittleEndian.PutUint32(msg[offSender:], sender)
	copy(msg[offEphemeral:], ephPub)

	c := kdf1(in.c, ephPub)
	h := mixHash(in.h, ephPub)
	ss, err := dh(eph, in.responder[:])
	if err != nil {
		return nil, nil, err
	}
	c, key := kdf2(c, ss[:])
	seal(key, h, msg[offStatic:offStatic], in.pub[:])
	h = mixHash(h, msg[offStatic:offStatic+staticLen])
	c, key = kdf2(c, in.ss[:])
	seal(key, h, msg[offTimestamp:offTimestamp], ts[:])
	hs.c, hs.h = c, mixHash(h, msg[offTimestamp:offTimestamp+timestampLen])

	macs.AddMacs(msg)
	return hs, msg, nil
}

// dh is X25519 of k and pub; an error for a low-order point.
func dh(k *ecdh.PrivateKey, pub []byte) ([32]byte, error) {
	p, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return [32]byte{}, err
	}
	ss, err := k.ECDH(p)
	if err != nil {
		return [32]byte{}, err
	}
	return [32]byte(ss), nil
}

// ResponseLen is the size of a handshake response: type, sender,
// receiver, ephemeral, empty, mac1, mac2.
const ResponseLen = 92

// Keys are a session's transport keys on the initiator's side, and the
// responder's index for it.
type Keys struct {
	Send, Recv [32]byte
	Receiver   uint32 // the responder's sender index: its name for the session
}

// ReadResponse reads the responder's answer to hs (message 2) and derives
// the session's keys; false when msg is no response to hs. The response's
// MACs are not checked: its AEAD authenticates the responder.
func (hs *Handshake) ReadResponse(msg []byte) (Keys, bool) {
	if len(msg) != ResponseLen || msg[0] != device.MessageResponseType ||
		binary.LittleEndian.Uint32(msg[8:]) != hs.sender {
		return Keys{}, false
	}
	e := msg[12:44]
	c := kdf1(hs.c, e)
	h := mixHash(hs.h, e)
	ss, err := dh(hs.eph, e)
	if err != nil {
		return Keys{}, false
	}
	c = kdf1(c, ss[:])
	if ss, err = dh(hs.in.priv, e); err != nil {
		return Keys{}, false
	}
	c = kdf1(c, ss[:])
	var psk [32]byte // none
	c, tau, key := kdf3(c, psk[:])
	h = mixHash(h, tau[:])
	if _, err := open(key, h, nil, msg[44:60]); err != nil {
		return Keys{}, false
	}
	send, recv := kdf2(c, nil)
	return Keys{Send: send, Recv: recv, Receiver: binary.LittleEndian.Uint32(msg[4:])}, true
}

// AppendTransport appends a transport message (message 4) carrying payload
// with nonce counter to dst; an empty payload is a keepalive (32 bytes).
// WireGuard pads payloads to 16 bytes; callers here send keepalives only.
func (k *Keys) AppendTransport(dst []byte, counter uint64, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, device.MessageTransportType)
	dst = binary.LittleEndian.AppendUint32(dst, k.Receiver)
	dst = binary.LittleEndian.AppendUint64(dst, counter)
	aead, _ := chacha20poly1305.New(k.Send[:])
	var nonce [chacha20poly1305.NonceSize]byte
	binary.LittleEndian.PutUint64(nonce[4:], counter)
	return aead.Seal(dst, nonce[:], payload, nil)
}

// initial is the chaining key and hash both sides start from, the
// responder's key mixed in.
func initial(responder vpn.PublicKey) (c, h [32]byte) {
	c = blake2s.Sum256([]byte(construction))
	h = mixHash(mixHash(c, []byte(identifier)), responder[:])
	return c, h
}

func open(key, ad [32]byte, dst, sealed []byte) ([]byte, error) {
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		return nil, err
	}
	var nonce [chacha20poly1305.NonceSize]byte
	return aead.Open(dst, nonce[:], sealed, ad[:])
}

func seal(key, ad [32]byte, dst, plain []byte) {
	aead, _ := chacha20poly1305.New(key[:])
	var nonce [chacha20poly1305.NonceSize]byte
	aead.Seal(dst, nonce[:], plain, ad[:])
}

// mixHash is BLAKE2s of h and data. The handshake hashes and HMACs short
// inputs only (at most a block of 64 bytes; longer is a bug here, and
// panics); mixHash and hmacBlake2s build them in arrays on the stack:
// hash.Hash and crypto/hmac allocated 6 KB in 78 pieces for each
// initiation the relay read.
func mixHash(h [32]byte, data []byte) [32]byte {
	var in [blake2s.Size + blake2s.BlockSize]byte
	if len(data) > blake2s.BlockSize {
		panic("noise: mixHash of more than a block")
	}
	copy(in[:], h[:])
	n := copy(in[blake2s.Size:], data)
	return blake2s.Sum256(in[:blake2s.Size+n])
}

// hmacBlake2s is HMAC-BLAKE2s (RFC 2104) of data under key, each at most
// a block.
func hmacBlake2s(key, data []byte) [32]byte {
	const block = blake2s.BlockSize
	if len(key) > block || len(data) > block {
		panic("noise: HMAC of more than a block")
	}
	var in [2 * block]byte               // key ^ ipad, data
	var outer [block + blake2s.Size]byte // key ^ opad, the inner hash
	for i := range block {
		in[i], outer[i] = 0x36, 0x5c
	}
	for i, b := range key {
		in[i] ^= b
		outer[i] ^= b
	}
	n := copy(in[block:], data)
	inner := blake2s.Sum256(in[:block+n])
	copy(outer[block:], inner[:])
	return blake2s.Sum256(outer[:])
}

// kdf1, kdf2 and kdf3 are HKDF with HMAC-BLAKE2s, one to three outputs.
func kdf1(key [32]byte, input []byte) [32]byte {
	t0 := hmacBlake2s(key[:], input)
	return hmacBlake2s(t0[:], []byte{1})
}

func kdf2(key [32]byte, input []byte) ([32]byte, [32]byte) {
	t0 := hmacBlake2s(key[:], input)
	t1 := hmacBlake2s(t0[:], []byte{1})
	c := counted(t1, 2)
	t2 := hmacBlake2s(t0[:], c[:])
	return t1, t2
}

func kdf3(key [32]byte, input []byte) ([32]byte, [32]byte, [32]byte) {
	t0 := hmacBlake2s(key[:], input)
	t1 := hmacBlake2s(t0[:], []byte{1})
	c := counted(t1, 2)
	t2 := hmacBlake2s(t0[:], c[:])
	c = counted(t2, 3)
	t3 := hmacBlake2s(t0[:], c[:])
	return t1, t2, t3
}

// counted is HKDF's input for its next output: the last output and i.
func counted(t [32]byte, i byte) (b [33]byte) {
	copy(b[:], t[:])
	b[32] = i
	return b
}
