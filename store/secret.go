package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// newSecret makes an app token or a session id: 32 random bytes, base64url
// without padding (43 characters). The caller shows it once; the store
// keeps only hashSecret of it.
func newSecret() (secret, hash string) {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand panics rather than return short)
	secret = base64.RawURLEncoding.EncodeToString(b)
	return secret, hashSecret(secret)
}

// hashSecret is what the store keeps of a token or session id: the hex
// SHA-256 of its text. A secret of 256 random bits needs no salt or slow
// hash, and is found by an index lookup of its hash, which tells an
// attacker timing nothing about any stored secret.
func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}
