package vpn

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/curve25519"

	"github.com/hubtunnel/hubtunnel/internal/atomicfile"
)

// PrivateKey is a WireGuard private key. Its String method never shows the
// key, so a stray %v in a log line cannot leak it; use Base64 on purpose.
type PrivateKey [32]byte

// PublicKey is a WireGuard public key, printed in base64 like `wg pubkey`.
type PublicKey [32]byte

// GeneratePrivateKey returns a new clamped Curve25519 private key.
func GeneratePrivateKey() (PrivateKey, error) {
	var k PrivateKey
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("vpn.GeneratePrivateKey: %w", err)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
}

// Public derives the public key.
func (k PrivateKey) Public() PublicKey {
	var p PublicKey
	curve25519.ScalarBaseMult((*[32]byte)(&p), (*[32]byte)(&k))
	return p
}

func (k PrivateKey) String() string { return "(private key)" }

// SharedSecret is the X25519 Diffie-Hellman secret of k and peer, the same
// from either side's private key and the other's public one; false for a
// peer key that gives the all-zero secret (a low-order point).
func (k PrivateKey) SharedSecret(peer PublicKey) ([32]byte, bool) {
	s, err := curve25519.X25519(k[:], peer[:])
	if err != nil {
		return [32]byte{}, false
	}
	return [32]byte(s), true
}
func (k PrivateKey) Base64() string { return base64.StdEncoding.EncodeToString(k[:]) }
func (k PrivateKey) hex() string    { return hex.EncodeToString(k[:]) }
func (k PrivateKey) IsZero() bool   { return k == PrivateKey{} }

func (p PublicKey) String() string { return base64.StdEncoding.EncodeToString(p[:]) }
func (p PublicKey) hex() string    { return hex.EncodeToString(p[:]) }
func (p PublicKey) IsZero() bool   { return p == PublicKey{} }

// Short is the first 8 characters of the base64 key, for log lines.
func (p PublicKey) Short() string { return p.String()[:8] }

// ParsePublicKey parses a base64 key as printed by `wg pubkey`.
func ParsePublicKey(s string) (PublicKey, error) {
	var p PublicKey
	b, err := decodeKey(s)
	if err != nil {
		return p, fmt.Errorf("public key: %w", err)
	}
	copy(p[:], b)
	return p, nil
}

// ParsePrivateKey parses a base64 key as printed by `wg genkey`. The error
// never contains the input.
func ParsePrivateKey(s string) (PrivateKey, error) {
	var k PrivateKey
	b, err := decodeKey(s)
	if err != nil {
		return k, fmt.Errorf("private key: %w", err)
	}
	copy(k[:], b)
	return k, nil
}

func decodeKey(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != 32 {
		return nil, errors.New("not a base64-encoded 32-byte WireGuard key")
	}
	return b, nil
}

// LoadPrivateKey reads a key file written by SavePrivateKey or `wg genkey`.
// A file that others can read is refused: the key must never leave the hub.
func LoadPrivateKey(path string) (PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("vpn.LoadPrivateKey: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return PrivateKey{}, fmt.Errorf("vpn.LoadPrivateKey: %s is readable by others (mode %v); run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("vpn.LoadPrivateKey: %w", err)
	}
	k, err := ParsePrivateKey(string(b))
	if err != nil {
		return k, fmt.Errorf("vpn.LoadPrivateKey: %s: %w", path, err)
	}
	return k, nil
}

// LoadOrCreatePrivateKey loads the key at path, or generates one and writes
// it there (mode 0600) when the file does not exist yet.
func LoadOrCreatePrivateKey(path string) (k PrivateKey, created bool, err error) {
	k, err = LoadPrivateKey(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return k, false, err
	}
	if k, err = GeneratePrivateKey(); err != nil {
		return k, false, err
	}
	if err := SavePrivateKey(path, k); err != nil {
		return k, false, err
	}
	return k, true, nil
}

// SavePrivateKey writes k to path atomically with mode 0600.
func SavePrivateKey(path string, k PrivateKey) error {
	return atomicfile.WriteFile(path, []byte(k.Base64()+"\n"), 0o600)
}
