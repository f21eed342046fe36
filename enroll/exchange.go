package enroll

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// The exchange, on a connection of its own to the relay's agent port (direct,
// through a proxy or over TLS), each message one wire frame:
//
//	agent → relay  Request    A3, version, ID (16), agent nonce (16)
//	relay → agent  Challenge  A4, relay key (32), relay nonce (16), MAC (32)
//	agent → relay  Register   A5, hub key (32), MAC (32), software (text)
//	relay → agent  Result     A6, MAC (32), JSON (name, addresses)
//
// Each MAC is HMAC-SHA256 keyed by the code's secret over a label, the
// transcript so far (ID, both nonces, the relay's key) and the message's own
// fields. The relay may answer any step with an Error frame (wire.CodeEnroll…)
// and closes.

// Version is the exchange's version in a Request.
const Version = 1

const (
	nonceLen  = 16
	macLen    = 32
	maxResult = 2048 // the Result's JSON
)

// DefaultTimeout bounds a whole exchange when the context has no deadline.
const DefaultTimeout = 20 * time.Second

// Result is what the relay tells a hub it enrolled.
type Result struct {
	Hub           string `json:"hub"`             // the hub's name: NAME.<domain>
	TunnelIP      string `json:"tunnel_ip"`       // the hub's address inside the tunnel
	RelayTunnelIP string `json:"relay_tunnel_ip"` // the relay's
	URL           string `json:"url,omitempty"`   // where its owner reaches the hub's WebUI
	// RelayTLS is the relay's TLS port ("host:port") for networks that
	// let only HTTPS out; "" when the relay has none.
	RelayTLS string `json:"relay_tls,omitempty"`

	// RelayKey is the relay's WireGuard key, proven by the exchange: the
	// key the agent pins. Not part of the JSON.
	RelayKey vpn.PublicKey `json:"-"`
}

// Request opens an exchange.
type Request struct {
	Version uint8
	ID      ID
	Nonce   [nonceLen]byte
}

// Marshal returns the Request as a frame payload.
func (r Request) Marshal() []byte {
	b := []byte{wire.TypeEnrollRequest, r.Version}
	b = append(b, r.ID[:]...)
	return append(b, r.Nonce[:]...)
}

// ParseRequest decodes a Request payload.
func ParseRequest(p []byte) (Request, error) {
	if len(p) != 2+len(ID{})+nonceLen || p[0] != wire.TypeEnrollRequest {
		return Request{}, fmt.Errorf("%w: enroll request", wire.ErrBadControl)
	}
	r := Request{Version: p[1]}
	copy(r.ID[:], p[2:])
	copy(r.Nonce[:], p[2+len(r.ID):])
	return r, nil
}

// transcript is what both sides' MACs cover.
type transcript struct {
	id         ID
	agentNonce [nonceLen]byte
	relayNonce [nonceLen]byte
	relayKey   vpn.PublicKey
}

func (t *transcript) mac(key []byte, label string, parts ...[]byte) []byte {
	all := append([][]byte{t.id[:], t.agentNonce[:], t.relayNonce[:], t.relayKey[:]}, parts...)
	return mac(key, label, all...)
}

// Exchange is the relay's side of one enrollment, from a Request it found
// the code of to the Result.
type Exchange struct {
	key []byte
	t   transcript
	hub vpn.PublicKey
}

// Challenge answers req for the code with this secret (which the relay
// found by req.ID and derived with DeriveSecret) with the relay's key, and
// returns the exchange and the Challenge frame's payload.
func Challenge(secret [SecretLen]byte, req Request, relayKey vpn.PublicKey) (*Exchange, []byte, error) {
	if IDOf(secret) != req.ID {
		return nil, nil, errors.New("enroll: the secret is not the request's code's")
	}
	x := &Exchange{key: keyOf(secret), t: transcript{id: req.ID, agentNonce: req.Nonce, relayKey: relayKey}}
	if _, err := rand.Read(x.t.relayNonce[:]); err != nil {
		return nil, nil, fmt.Errorf("enroll: %w", err)
	}
	b := []byte{wire.TypeEnrollChallenge}
	b = append(b, relayKey[:]...)
	b = append(b, x.t.relayNonce[:]...)
	return x, append(b, x.t.mac(x.key, "relay")...), nil
}

// ErrNotProven is a Register whose MAC is wrong: whoever sent it does not
// hold the code.
var ErrNotProven = errors.New("enroll: the registration is not made with this code")

// Register checks the agent's Register payload and returns the hub's key
// and the agent's software text.
func (x *Exchange) Register(p []byte) (vpn.PublicKey, string, error) {
	if len(p) < 1+32+macLen || p[0] != wire.TypeEnrollRegister {
		return vpn.PublicKey{}, "", fmt.Errorf("%w: enroll register", wire.ErrBadControl)
	}
	var hub vpn.PublicKey
	copy(hub[:], p[1:])
	got, sw := p[1+32:1+32+macLen], p[1+32+macLen:]
	if !hmac.Equal(got, x.t.mac(x.key, "hub", hub[:], sw)) {
		return vpn.PublicKey{}, "", ErrNotProven
	}
	s, err := wire.Text(sw)
	if err != nil {
		return vpn.PublicKey{}, "", fmt.Errorf("enroll register: %w", err)
	}
	x.hub = hub
	return hub, s, nil
}

// Result returns the Result frame's payload for r.
func (x *Exchange) Result(r Result) ([]byte, error) {
	js, err := json.Marshal(r)
	if err != nil || len(js) > maxResult {
		return nil, fmt.Errorf("enroll: result of %d bytes: %v", len(js), err)
	}
	b := append([]byte{wire.TypeEnrollResult}, x.t.mac(x.key, "result", x.hub[:], js)...)
	return append(b, js...), nil
}

// Refused is the relay's refusal of a code, as a hub owner reads it.
type Refused struct {
	Code    uint8  // wire.CodeEnroll…, or another Error code
	Message string // the relay's own words
	relay   string
}

func (r *Refused) Error() string {
	switch r.Code {
	case wire.CodeEnrollUnknown:
		return fmt.Sprintf("the relay %s does not know this code: it was made by another relay, or it was withdrawn. Ask for a new code", r.relay)
	case wire.CodeEnrollUsed:
		return "this code has been used already: each code works once. Ask for a new code in the relay's portal (Add hub)"
	case wire.CodeEnrollExpired:
		return "this code has expired. Ask for a new code in the relay's portal (Add hub)"
	case wire.CodeEnrollLimit:
		return fmt.Sprintf("the relay %s refuses more attempts from this network for now: wait 15 minutes, then try again", r.relay)
	case wire.CodeEnrollKeyTaken:
		return "this hub is registered at the relay already (" + r.Message + ")"
	case wire.CodeEnrollName:
		return "the hub's name has been taken since the code was made (" + r.Message + "). Ask for a new code"
	}
	return fmt.Sprintf("the relay %s refused: %s", r.relay, r.Message)
}

// ErrRelayNotProven means the other end could not prove it made the code:
// the wrong relay, or something in between that is not the relay.
var ErrRelayNotProven = errors.New("enroll: relay not proven")

// Enroll runs the agent's side of the exchange on c, a new connection to
// the code's relay, registering hub (whose agent says software of itself).
// It closes c when done. Its errors are written for a hub owner.
func Enroll(ctx context.Context, c net.Conn, code Code, hub vpn.PublicKey, software string) (Result, error) {
	defer c.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultTimeout)
	}
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	wc := wire.NewConn(c, wire.ConnConfig{})
	defer wc.Close()
	fail := func(step string, err error) (Result, error) {
		var re *Refused
		switch {
		case errors.As(err, &re):
			return Result{}, err
		case errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil:
			return Result{}, fmt.Errorf("the relay %s did not answer in time (%s)", code.Relay, step)
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return Result{}, fmt.Errorf("the relay %s hung up (%s): is %s the relay's agent address, and is the relay up to date?", code.Relay, step, code.Addr())
		}
		return Result{}, fmt.Errorf("enrolling at %s (%s): %w", code.Relay, step, err)
	}

	t := transcript{id: code.ID()}
	if _, err := rand.Read(t.agentNonce[:]); err != nil {
		return Result{}, err
	}
	key := keyOf(code.Secret)
	if err := wc.Write([][]byte{Request{Version: Version, ID: t.id, Nonce: t.agentNonce}.Marshal()}); err != nil {
		return fail("sending the request", err)
	}
	buf := make([]byte, wire.MaxFrame)
	p, err := readStep(wc, buf, wire.TypeEnrollChallenge, code.Relay)
	if err != nil {
		return fail("waiting for the relay's answer", err)
	}
	if len(p) != 1+32+nonceLen+macLen {
		return fail("reading the relay's answer", fmt.Errorf("%w: enroll challenge", wire.ErrBadControl))
	}
	copy(t.relayKey[:], p[1:])
	copy(t.relayNonce[:], p[1+32:])
	if !hmac.Equal(p[1+32+nonceLen:], t.mac(key, "relay")) {
		return Result{}, fmt.Errorf("%w: whoever answers at %s could not prove it made this code. Check the relay's address in the code; if it is right, something between this hub and the relay is not the relay", ErrRelayNotProven, code.Addr())
	}

	sw := []byte(wire.Clip(software))
	reg := []byte{wire.TypeEnrollRegister}
	reg = append(reg, hub[:]...)
	reg = append(reg, t.mac(key, "hub", hub[:], sw)...)
	if err := wc.Write([][]byte{append(reg, sw...)}); err != nil {
		return fail("registering the hub's key", err)
	}
	if p, err = readStep(wc, buf, wire.TypeEnrollResult, code.Relay); err != nil {
		return fail("waiting for the hub's name", err)
	}
	if len(p) < 1+macLen || len(p) > 1+macLen+maxResult {
		return fail("reading the hub's name", fmt.Errorf("%w: enroll result", wire.ErrBadControl))
	}
	js := p[1+macLen:]
	if !hmac.Equal(p[1:1+macLen], t.mac(key, "result", hub[:], js)) {
		return Result{}, fmt.Errorf("%w: the relay's last answer is not made with this code", ErrRelayNotProven)
	}
	var r Result
	if err := json.Unmarshal(js, &r); err != nil || r.Hub == "" || r.TunnelIP == "" {
		return fail("reading the hub's name", fmt.Errorf("%w: enroll result", wire.ErrBadControl))
	}
	r.RelayKey = t.relayKey
	return r, nil
}

// readStep reads the next frame, which must be of type want or an Error.
func readStep(wc *wire.Conn, buf []byte, want byte, relay string) ([]byte, error) {
	n, err := wc.ReadFrame(buf)
	if err != nil {
		return nil, err
	}
	p := buf[:n]
	switch p[0] {
	case want:
		return p, nil
	case wire.TypeError:
		e, err := wire.ParseError(p)
		if err != nil {
			return nil, err
		}
		return nil, &Refused{Code: e.Code, Message: e.Message, relay: relay}
	}
	return nil, fmt.Errorf("%w: frame type %#x during enrollment", wire.ErrBadControl, p[0])
}
