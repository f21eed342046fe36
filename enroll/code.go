// Package enroll is how a hub joins a relay with one code and nothing else
// typed: the code's format, and the four-frame exchange on the agent port in
// which the relay proves it made the code (so the agent may pin the relay's
// key it learns there) and the agent registers its own key.
//
// A code is the relay's address and an 80-bit secret, with a two-letter
// checksum over both, in Crockford's base32 (no I, L, O, U; read
// case-insensitively, with I and L taken as 1 and O as 0):
//
//	relay.example.org/7KQ4-M2XD-9PWE-HT3A-RX
//	relay.example.org:8443/7KQ4-M2XD-9PWE-HT3A-RX   (another agent port)
//
// The secret never crosses the network. The agent sends the code's ID (a hash
// of the secret); the relay answers with its public key and a MAC over it
// keyed by the secret; only then does the agent send its own key, MAC'd the
// same way, and the relay answers with the hub's name and tunnel address,
// MAC'd too. Someone in between learns neither the secret nor anything they
// could change without it, and an 80-bit secret cannot be guessed from what
// they saw. The relay keeps no secret either: it derives each code's secret
// from a random seed and its own private key (DeriveSecret).
//
// It must never log or print a secret, and never trust a frame it reads: every
// decoder bounds what it accepts.
package enroll

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/hubtunnel/hubtunnel/vpn"
)

// DefaultPort is the relay's agent port when a code names none.
const DefaultPort = 7443

// SecretLen is the secret's length in bytes: 80 bits, 16 characters.
const SecretLen = 10

// Code is a parsed enrollment code.
type Code struct {
	// Relay is the relay's agent address as the code writes it: a lower-case
	// host name or IP address, with ":port" unless the port is DefaultPort
	// (an IPv6 address in brackets).
	Relay  string
	Secret [SecretLen]byte
}

// ID names a code on the wire without revealing its secret.
type ID [16]byte

// Errors of Parse. Their text is for a hub owner.
var (
	ErrFormat = errors.New("this is not an enrollment code; a code looks like relay.example.org/7KQ4-M2XD-9PWE-HT3A-RX")
	ErrTypo   = errors.New("the code has a typo: check each letter and digit, and the relay's address before the slash")
)

// alphabet is Crockford's base32.
const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// symbols is the code's length in base32 symbols: the secret, then a
// two-symbol checksum.
const (
	secretSymbols = SecretLen * 8 / 5
	checkSymbols  = 2
)

// New makes a code for relay ("host" or "host:port") and secret.
func New(relay string, secret [SecretLen]byte) (Code, error) {
	r, err := canonicalRelay(relay)
	if err != nil {
		return Code{}, err
	}
	return Code{Relay: r, Secret: secret}, nil
}

// String is the code as a person types it: the relay, a slash, and the
// secret and checksum in groups of four.
func (c Code) String() string {
	syms := encode(c.Secret[:]) + c.checksum()
	var b strings.Builder
	b.WriteString(c.Relay)
	b.WriteByte('/')
	for i := 0; i < len(syms); i += 4 {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(syms[i:min(i+4, len(syms))])
	}
	return b.String()
}

// Addr is the relay's agent address, host:port.
func (c Code) Addr() string {
	if _, _, err := net.SplitHostPort(c.Relay); err == nil {
		return c.Relay
	}
	return net.JoinHostPort(strings.Trim(c.Relay, "[]"), strconv.Itoa(DefaultPort))
}

// Host is the relay's host name or address, without port or brackets.
func (c Code) Host() string {
	if h, _, err := net.SplitHostPort(c.Relay); err == nil {
		return h
	}
	return strings.Trim(c.Relay, "[]")
}

// ID is the code's name on the wire.
func (c Code) ID() ID {
	var id ID
	copy(id[:], mac(c.Secret[:], "hubtunnel enroll v1 id"))
	return id
}

// IDOf is the ID of the code with this secret.
func IDOf(secret [SecretLen]byte) ID { return Code{Secret: secret}.ID() }

// keyOf is what the exchange's MACs are keyed with.
func keyOf(secret [SecretLen]byte) []byte { return mac(secret[:], "hubtunnel enroll v1 key") }

// Parse reads a code as a person typed or pasted it: surrounding space,
// lower case, spaces or no dashes inside the secret, and I, L and O for 1,
// 1 and 0 are all fine. A code whose checksum does not match is ErrTypo.
func Parse(s string) (Code, error) {
	s = strings.TrimSpace(s)
	slash := strings.LastIndexByte(s, '/')
	if slash <= 0 {
		return Code{}, ErrFormat
	}
	relay, err := canonicalRelay(s[:slash])
	if err != nil {
		return Code{}, err
	}
	var syms strings.Builder
	for _, r := range strings.ToUpper(s[slash+1:]) {
		switch {
		case r == '-' || r == ' ':
			continue
		case r == 'I' || r == 'L':
			r = '1'
		case r == 'O':
			r = '0'
		}
		if !strings.ContainsRune(alphabet, r) {
			return Code{}, fmt.Errorf("%w (%q is not one of its letters)", ErrTypo, r)
		}
		syms.WriteRune(r)
	}
	all := syms.String()
	if len(all) != secretSymbols+checkSymbols {
		return Code{}, fmt.Errorf("%w (it has %d letters and digits after the slash, not %d)", ErrTypo, len(all), secretSymbols+checkSymbols)
	}
	c := Code{Relay: relay}
	decode(all[:secretSymbols], c.Secret[:])
	if c.checksum() != all[secretSymbols:] {
		return Code{}, ErrTypo
	}
	return c, nil
}

// checksum is two symbols (10 bits) of a hash over the relay and the
// secret: a changed letter, two swapped ones or a mistyped address are
// caught but for one time in 1024.
func (c Code) checksum() string {
	h := sha256.New()
	h.Write([]byte("hubtunnel enroll v1 check\x00" + c.Relay + "\x00"))
	h.Write(c.Secret[:])
	sum := h.Sum(nil)
	v := int(sum[0])<<2 | int(sum[1])>>6
	return string([]byte{alphabet[v>>5], alphabet[v&31]})
}

// canonicalRelay checks a relay address as written in a code and returns
// it lower-cased, without DefaultPort.
func canonicalRelay(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	host, port := s, ""
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	}
	host = strings.TrimSuffix(host, ".")
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return "", fmt.Errorf("%w (the relay's port %q is not a number from 1 to 65535)", ErrFormat, port)
		}
		if n == DefaultPort {
			port = ""
		}
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.Unmap().String()
		if ip.Unmap().Is6() {
			if port == "" {
				return "[" + host + "]", nil
			}
		}
	} else if !validHost(host) {
		return "", fmt.Errorf("%w (%q is not a relay address)", ErrFormat, host)
	}
	if port == "" {
		return host, nil
	}
	return net.JoinHostPort(host, port), nil
}

// validHost reports whether h is a DNS name: labels of letters, digits and
// '-', at most 253 characters.
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// encode writes b (a multiple of 5 bytes) in base32 symbols.
func encode(b []byte) string {
	var out []byte
	var acc uint64
	bits := 0
	for _, x := range b {
		acc = acc<<8 | uint64(x)
		bits += 8
		for bits >= 5 {
			bits -= 5
			out = append(out, alphabet[acc>>bits&31])
		}
	}
	return string(out)
}

// decode reads base32 symbols (from the alphabet) into dst.
func decode(s string, dst []byte) {
	var acc uint64
	bits, n := 0, 0
	for i := 0; i < len(s); i++ {
		acc = acc<<5 | uint64(strings.IndexByte(alphabet, s[i]))
		bits += 5
		if bits >= 8 {
			bits -= 8
			dst[n] = byte(acc >> bits)
			n++
		}
	}
}

// DeriveSecret is the secret of the code with this seed at the relay with
// this key: the relay stores only the seed, so its database alone enrolls
// nothing.
func DeriveSecret(relayKey vpn.PrivateKey, seed [16]byte) [SecretLen]byte {
	var s [SecretLen]byte
	copy(s[:], mac(relayKey[:], "hubtunnel enroll v1 secret", seed[:]))
	return s
}

func mac(key []byte, label string, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	m.Write([]byte{0})
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}
