package portal

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"
)

// TOTP as RFC 6238 has it and every authenticator app takes it: HMAC-SHA-1,
// 6 digits, 30-second steps, the secret as unpadded base32. A code of the
// step before or after the current one is accepted too (clocks drift), and
// each user's codes are accepted only for steps later than the last one
// accepted, so a code once used — seen over a shoulder, replayed — never
// works again (RFC 6238, section 5.2).
const (
	totpDigits    = 6
	totpStep      = 30 // seconds
	totpSkew      = 1  // steps either side
	totpSecretLen = 20 // bytes: 160 bits, as RFC 4226 recommends
)

var base32NoPad = base32.StdEncoding.WithPadding(base32.NoPadding)

// newTOTPSecret makes a TOTP secret, as base32 for the app and the store.
func newTOTPSecret() string {
	b := make([]byte, totpSecretLen)
	rand.Read(b)
	return base32NoPad.EncodeToString(b)
}

// totpKey decodes a base32 secret, with or without padding and spaces.
func totpKey(secret string) ([]byte, error) {
	s := strings.TrimRight(strings.ToUpper(strings.ReplaceAll(secret, " ", "")), "=")
	return base32NoPad.DecodeString(s)
}

// hotp is RFC 4226's one-time password of key for counter.
func hotp(key []byte, counter uint64) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	m := hmac.New(sha1.New, key)
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%0*d", totpDigits, v%1_000_000)
}

// totpCounter is the time step t falls in.
func totpCounter(t time.Time) uint64 { return uint64(t.Unix()) / totpStep }

// totpGuard checks codes and remembers, per user, the last step a code was
// accepted for.
type totpGuard struct {
	mu    sync.Mutex
	used  map[int64]uint64 // user ID → last accepted step
	swept time.Time
}

func newTOTPGuard() *totpGuard { return &totpGuard{used: map[int64]uint64{}} }

// check reports whether code is a valid code of secret at now for a step
// later than the user's last accepted one; a code that passes is used up.
func (g *totpGuard) check(userID int64, secret, code string, now time.Time) bool {
	if !sixDigits(code) {
		return false
	}
	key, err := totpKey(secret)
	if err != nil || len(key) == 0 {
		return false
	}
	cur := totpCounter(now)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sweepLocked(now, cur)
	last, seen := g.used[userID]
	for d := -totpSkew; d <= totpSkew; d++ {
		step := cur + uint64(d)
		if (d < 0 && cur < uint64(-d)) || (seen && step <= last) {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(hotp(key, step)), []byte(code)) == 1 {
			g.used[userID] = step
			return true
		}
	}
	return false
}

// sweepLocked forgets steps that can no longer be accepted anyway, at most
// once a minute.
func (g *totpGuard) sweepLocked(now time.Time, cur uint64) {
	if now.Sub(g.swept) < time.Minute {
		return
	}
	g.swept = now
	for u, step := range g.used {
		if step+totpSkew < cur {
			delete(g.used, u)
		}
	}
}

// sixDigits: a code as the form takes it.
func sixDigits(code string) bool {
	if len(code) != totpDigits {
		return false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return false
		}
	}
	return true
}

// normCode takes a code as people type it: with spaces, say "123 456".
func normCode(code string) string {
	return strings.Join(strings.Fields(code), "")
}
