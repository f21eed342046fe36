package bench

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// CipherCost is what one core spends sealing and opening 10⁹ bytes with
// one AEAD, in messages of one size (wall time of one goroutine, so
// measured on a quiet machine it is CPU time).
type CipherCost struct {
	Name       string
	Message    int     // bytes per message
	Seal, Open float64 // seconds per 10⁹ bytes
}

// MeasureCiphers times the ciphers the peers phase's tools encrypt with,
// each for about d: ChaCha20-Poly1305 on 64 KiB messages (WireGuard's
// only cipher, so hubtunnel's on both transports, at the TCP transport's
// largest packet) and AES-128-GCM on 16 KiB records (frp's TLS 1.3: Go
// picks it first where the CPU has AES instructions). A download's every
// byte is sealed once by the agent and opened once by the relay, so this
// much of each tool's CPU per GB is its cipher's, whatever else it does.
// Go's implementations, as in hubtunnel and frp.
func MeasureCiphers(d time.Duration) ([]CipherCost, error) {
	cc, err := chacha20poly1305.New(make([]byte, chacha20poly1305.KeySize))
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(make([]byte, 16))
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	var out []CipherCost
	for _, c := range []struct {
		name string
		aead cipher.AEAD
		size int
	}{{"ChaCha20-Poly1305", cc, 64 << 10}, {"AES-128-GCM", gcm, 16 << 10}} {
		cost, err := timeAEAD(c.aead, c.size, d/2)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		cost.Name = c.name
		out = append(out, cost)
	}
	return out, nil
}

// timeAEAD seals messages of size bytes for about d, then opens one of
// them as often for about d, and checks that it opens to what was sealed.
func timeAEAD(a cipher.AEAD, size int, d time.Duration) (CipherCost, error) {
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i)
	}
	nonce := make([]byte, a.NonceSize())
	sealed := make([]byte, 0, size+a.Overhead())
	opened := make([]byte, 0, size)
	perGB := func(n int, took time.Duration) float64 {
		return took.Seconds() / (float64(n) * float64(size) / 1e9)
	}
	const maxRounds = 1 << 20 // bounded whatever the clock does
	start, n := time.Now(), 0
	for n < maxRounds && (n == 0 || time.Since(start) < d) {
		sealed = a.Seal(sealed[:0], nonce, msg, nil)
		n++
	}
	c := CipherCost{Message: size, Seal: perGB(n, time.Since(start))}
	start, n = time.Now(), 0
	for n < maxRounds && (n == 0 || time.Since(start) < d) {
		var err error
		if opened, err = a.Open(opened[:0], nonce, sealed, nil); err != nil {
			return c, err
		}
		n++
	}
	c.Open = perGB(n, time.Since(start))
	if string(opened) != string(msg) {
		return c, fmt.Errorf("opened %d bytes that differ from the %d sealed", len(opened), len(msg))
	}
	return c, nil
}
