package relay

import (
	"crypto/hmac"
	"hash"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"

	"github.com/hubtunnel/hubtunnel/vpn"
)

// The first steps of WireGuard's Noise IK handshake, as the responder
// takes them (the WireGuard paper, section 5.4.2; wireguard-go's
// device/noise-protocol.go), to learn which key an initiation comes from
// before WireGuard answers it: the hub a connection is for is the peer
// WireGuard authenticates, not the key its Hello names.
const (
	noiseConstruction = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
	wgIdentifier      = "WireGuard v1 zx2c4 Jason@zx2c4.com"

	initiationLen = 148 // type, sender, ephemeral, static, timestamp, mac1, mac2
	offEphemeral  = 8
	offStatic     = 40
	staticLen     = 32 + chacha20poly1305.Overhead
)

// initiatorKey returns the static public key an initiation message was
// sent with, which only the holder of the responder's private key (the
// relay) can read; false when msg is no initiation for this relay.
func initiatorKey(relay vpn.PrivateKey, relayPub vpn.PublicKey, msg []byte) (vpn.PublicKey, bool) {
	if len(msg) != initiationLen {
		return vpn.PublicKey{}, false
	}
	c := blake2s.Sum256([]byte(noiseConstruction))
	h := mixHash(mixHash(c, []byte(wgIdentifier)), relayPub[:])
	e := msg[offEphemeral : offEphemeral+32]
	c = kdf1(c, e)
	h = mixHash(h, e)
	ss, err := curve25519.X25519(relay[:], e)
	if err != nil {
		return vpn.PublicKey{}, false
	}
	_, key := kdf2(c, ss)
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		return vpn.PublicKey{}, false
	}
	var nonce [chacha20poly1305.NonceSize]byte
	static, err := aead.Open(nil, nonce[:], msg[offStatic:offStatic+staticLen], h[:])
	if err != nil || len(static) != 32 {
		return vpn.PublicKey{}, false
	}
	return vpn.PublicKey(static), true
}

func mixHash(h [32]byte, data []byte) [32]byte {
	b, _ := blake2s.New256(nil)
	b.Write(h[:])
	b.Write(data)
	var out [32]byte
	b.Sum(out[:0])
	return out
}

func newBlake2s() hash.Hash {
	h, _ := blake2s.New256(nil)
	return h
}

func hmacBlake2s(key, data []byte) [32]byte {
	m := hmac.New(newBlake2s, key)
	m.Write(data)
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// kdf1 and kdf2 are HKDF with HMAC-BLAKE2s, one and two outputs.
func kdf1(key [32]byte, input []byte) [32]byte {
	t0 := hmacBlake2s(key[:], input)
	return hmacBlake2s(t0[:], []byte{1})
}

func kdf2(key [32]byte, input []byte) ([32]byte, [32]byte) {
	t0 := hmacBlake2s(key[:], input)
	t1 := hmacBlake2s(t0[:], []byte{1})
	t2 := hmacBlake2s(t0[:], append(t1[:], 2))
	return t1, t2
}
