package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/hubtunnel/hubtunnel/enroll"
	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
	"github.com/hubtunnel/hubtunnel/wire"
)

// CodeSpec is an enrollment code to make.
type CodeSpec struct {
	Hub       string        // the name the hub will have
	Owner     string        // the account that will own it; "" for none
	CreatedBy string        // "operator", or the user making it
	TTL       time.Duration // how long it is valid; default enroll_ttl's default, 24h
}

// MakeEnrollCode makes a one-time code with which a hub enrolls at the
// relay whose key is key and whose agents reach it at address (the
// config's EnrollAddress): a random seed is kept in db, and the code's
// secret is derived from it with key, so the store never holds a secret.
// The portal (through the running relay) and `hubrelay hub add` both make
// codes here.
func MakeEnrollCode(ctx context.Context, db *store.Store, key vpn.PrivateKey, address string, spec CodeSpec, now time.Time) (enroll.Code, store.EnrollCode, error) {
	if spec.TTL <= 0 {
		spec.TTL = defaultEnrollTTL
	}
	var seed [16]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return enroll.Code{}, store.EnrollCode{}, fmt.Errorf("relay: enrollment code: %w", err)
	}
	code, err := enroll.New(address, enroll.DeriveSecret(key, seed))
	if err != nil {
		return enroll.Code{}, store.EnrollCode{}, fmt.Errorf("relay: enroll_address: %w", err)
	}
	id := code.ID()
	rec, err := db.CreateEnrollCode(ctx, store.EnrollSpec{
		ID:        hex.EncodeToString(id[:]),
		Seed:      hex.EncodeToString(seed[:]),
		RelayKey:  key.Public().String(),
		Hub:       spec.Hub,
		Owner:     spec.Owner,
		CreatedBy: spec.CreatedBy,
		Expires:   now.Add(spec.TTL),
	})
	if err != nil {
		return enroll.Code{}, store.EnrollCode{}, err
	}
	return code, rec, nil
}

// pickedEnrollAddress fills in enroll_address's default for an agent_listen
// whose port 0 was picked at start (Validate cannot know it).
func (s *Server) pickedEnrollAddress() {
	if s.cfg.EnrollAddress == "" {
		s.cfg.EnrollAddress = net.JoinHostPort(s.cfg.PublicHost, strconv.Itoa(s.agentLn.Addr().(*net.TCPAddr).Port))
	}
}

// NewEnrollCode makes a code at this running relay (see MakeEnrollCode).
func (s *Server) NewEnrollCode(ctx context.Context, spec CodeSpec) (enroll.Code, store.EnrollCode, error) {
	if spec.TTL <= 0 {
		spec.TTL = s.cfg.CodeTTL()
	}
	return MakeEnrollCode(ctx, s.db, s.key, s.cfg.EnrollAddress, spec, s.now())
}

const (
	// enrollAttempts is how many enrollments one source address (an IPv6
	// /64) may start in enrollWindow; a success gives its attempt back.
	// An 80-bit secret cannot be guessed at this rate; the limit keeps a
	// code's ID, which crosses the network in clear, from being tried
	// against the relay without end, and the store from being hammered.
	enrollAttempts = 10
	enrollWindow   = 15 * time.Minute
	// enrollAddrs bounds the addresses the limiter remembers; beyond it,
	// new addresses are refused until old entries run out (memory stays
	// bounded whatever the number of sources).
	enrollAddrs = 100_000
	// enrollTimeout bounds one exchange from the agent's Request to the
	// Result: the agent's own bound (enroll.DefaultTimeout) and some.
	enrollTimeout = 30 * time.Second
	// enrollStoreTimeout bounds each store call of an exchange.
	enrollStoreTimeout = 10 * time.Second
)

// enrollLimiter counts enrollment attempts per source address in fixed
// windows of enrollWindow.
type enrollLimiter struct {
	now func() time.Time

	mu        sync.Mutex
	addrs     map[netip.Prefix]*enrollAddr
	lastSweep time.Time
	// refusedLogs log refusals, per reason at most once every
	// refusedLogEvery relay-wide: the limit per address does not bound
	// a scan from many addresses (an IPv6 /48 is 65,536 of them). The
	// audit log keeps every refusal.
	refusedLogs map[string]*slog.Logger
}

// refusedLogEvery is how often one reason for refusing an enrollment is
// logged at most; refusedLogReasons how many reasons get a limiter of
// their own (the rest share one).
const (
	refusedLogEvery   = 10 * time.Second
	refusedLogReasons = 32
)

// refusedLog is the logger for refusals for reason, made from base.
func (l *enrollLimiter) refusedLog(base *slog.Logger, reason string) *slog.Logger {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.refusedLogs == nil {
		l.refusedLogs = map[string]*slog.Logger{}
	}
	if _, ok := l.refusedLogs[reason]; !ok && len(l.refusedLogs) >= refusedLogReasons {
		reason = ""
	}
	lg := l.refusedLogs[reason]
	if lg == nil {
		lg = logger.Limited(base, refusedLogEvery)
		l.refusedLogs[reason] = lg
	}
	return lg
}

type enrollAddr struct {
	start   time.Time // the window's start
	n       int       // attempts in it
	lastLog time.Time // when the address was last logged over the limit
}

func newEnrollLimiter(now func() time.Time) *enrollLimiter {
	return &enrollLimiter{now: now, addrs: map[netip.Prefix]*enrollAddr{}}
}

// take counts an attempt from key and reports whether it is allowed, and
// whether a refusal should be logged (at most once a minute per address).
func (l *enrollLimiter) take(key netip.Prefix) (ok, logIt bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= time.Minute {
		l.lastSweep = now
		for k, a := range l.addrs {
			if now.Sub(a.start) >= enrollWindow {
				delete(l.addrs, k)
			}
		}
	}
	a := l.addrs[key]
	if a == nil {
		if len(l.addrs) >= enrollAddrs {
			return false, false
		}
		a = &enrollAddr{start: now}
		l.addrs[key] = a
	}
	if now.Sub(a.start) >= enrollWindow {
		a.start, a.n = now, 0
	}
	if a.n >= enrollAttempts {
		logIt = now.Sub(a.lastLog) >= time.Minute
		if logIt {
			a.lastLog = now
		}
		return false, logIt
	}
	a.n++
	return true, false
}

// giveBack returns an attempt that enrolled a hub.
func (l *enrollLimiter) giveBack(key netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.addrs[key]; a != nil && a.n > 0 {
		a.n--
	}
}

// showKey is a limiter's key as an operator reads it: an IPv4 address, or
// an IPv6 /64.
func showKey(p netip.Prefix) string {
	if p.Addr().Is4() {
		return p.Addr().String()
	}
	return p.String()
}

// enrollRefusal is why an exchange ended without a hub: the Error frame
// the agent gets, and the reason for the log and the audit (never the
// code, its ID or its secret).
type enrollRefusal struct {
	code   uint8
	msg    string // to the agent
	reason string // for the operator
}

// serveEnroll runs the relay's side of an enrollment (package enroll) on
// an agent connection whose first frame, first, is a Request:
//
//  1. the source address's attempts are counted (enrollLimiter);
//  2. the code is looked up by its ID; one that is not this relay's (made
//     under another relay key, withdrawn, never made) is unknown;
//  3. its secret is derived from the stored seed and the relay's key, and
//     the Challenge proves the relay holds it;
//  4. the agent's Register, MAC'd with the secret, names the hub's key;
//  5. the store adds the hub and marks the code used, in one transaction;
//  6. the relay serves the hub at once (refresh), so that the agent's
//     tunnel connection, which follows right away, finds its peer;
//  7. the Result tells the agent its name and addresses.
//
// The connection carries nothing else and is closed afterwards.
func (s *Server) serveEnroll(ac *agentConn, first []byte, buf []byte) {
	ac.conn.SetReadDeadline(time.Now().Add(enrollTimeout))
	from := ac.remote.String()
	key := addrKey(net.TCPAddrFromAddrPort(ac.remote))
	ok, logIt := s.enrollLimit.take(key)
	if !ok {
		s.metrics.limitEnroll.Add(1)
		if logIt {
			s.log.Warn("enrollment attempts over the limit: refused", "address", showKey(key), "attempts", enrollAttempts, "window", enrollWindow.String())
		}
		ac.writeControl(wire.Error{Code: wire.CodeEnrollLimit, Message: "too many enrollment attempts from this network; try again in 15 minutes"}.Marshal())
		return
	}
	hub, software, refusal := s.enroll(ac, first, buf)
	if refusal != nil {
		ac.writeControl(wire.Error{Code: refusal.code, Message: refusal.msg}.Marshal())
		s.enrollLimit.refusedLog(s.log, refusal.reason).Info("enrollment refused", logger.Remote, from, "reason", refusal.reason)
		s.audit.add(store.Event{Kind: store.KindEnroll, Hub: hub, Source: from, Outcome: "refused", Detail: refusal.reason})
		return
	}
	s.enrollLimit.giveBack(key)
	s.log.Info("hub enrolled", logger.Hub, hub, logger.Remote, from, logger.Transport, ac.transport, "software", software)
	s.audit.add(store.Event{Kind: store.KindEnroll, Hub: hub, Source: from, Outcome: "ok", Detail: software})
}

// enroll is serveEnroll's exchange, steps 2 to 7. It returns the hub's
// name (once the code is known) and the agent's software, or why not.
func (s *Server) enroll(ac *agentConn, first []byte, buf []byte) (hub, software string, _ *enrollRefusal) {
	req, err := enroll.ParseRequest(first)
	if err != nil {
		return "", "", &enrollRefusal{wire.CodeUnknown, "malformed enrollment request", "malformed request"}
	}
	if req.Version != enroll.Version {
		return "", "", &enrollRefusal{wire.CodeVersion, fmt.Sprintf("relay speaks enrollment version %d, agent %d: update the agent", enroll.Version, req.Version),
			fmt.Sprintf("enrollment version %d", req.Version)}
	}
	unknown := &enrollRefusal{wire.CodeEnrollUnknown, "this relay knows no such code", "unknown code"}
	id := hex.EncodeToString(req.ID[:])
	ctx, cancel := context.WithTimeout(context.Background(), enrollStoreTimeout)
	rec, err := s.db.EnrollCodeByID(ctx, id)
	cancel()
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", "", unknown
	case err != nil:
		s.storeErrLog.Warn("store: enrollment failed", logger.Err, err)
		return "", "", &enrollRefusal{wire.CodeUnknown, "the relay cannot enroll hubs right now; try again later", "the store did not answer"}
	case rec.RelayKey != s.pub.String():
		unknown.reason = "a code made under another relay key"
		return "", "", unknown
	case !rec.Used.IsZero():
		return rec.Hub, "", &enrollRefusal{wire.CodeEnrollUsed, "this code has been used already", "code used already"}
	case !s.now().Before(rec.Expires):
		return rec.Hub, "", &enrollRefusal{wire.CodeEnrollExpired, "this code has expired", "code expired"}
	}
	var seed [16]byte
	if b, err := hex.DecodeString(rec.Seed); err != nil || copy(seed[:], b) != len(seed) {
		unknown.reason = "a code whose seed is unreadable"
		return rec.Hub, "", unknown
	}
	x, challenge, err := enroll.Challenge(enroll.DeriveSecret(s.key, seed), req, s.pub)
	if err != nil {
		unknown.reason = "a code whose seed does not make its ID"
		return rec.Hub, "", unknown
	}
	if err := ac.writeControl(challenge); err != nil {
		return rec.Hub, "", &enrollRefusal{wire.CodeUnknown, "", "the agent went away"}
	}
	n, err := ac.conn.ReadFrame(buf)
	if err != nil {
		return rec.Hub, "", &enrollRefusal{wire.CodeUnknown, "", "the agent went away before registering"}
	}
	hubKey, software, err := x.Register(buf[:n])
	switch {
	case errors.Is(err, enroll.ErrNotProven):
		return rec.Hub, "", &enrollRefusal{wire.CodeEnrollUnknown, "the registration is not made with this code", "a registration not made with the code (wrong MAC)"}
	case err != nil:
		return rec.Hub, "", &enrollRefusal{wire.CodeUnknown, "malformed registration", "malformed registration"}
	}
	ctx, cancel = context.WithTimeout(context.Background(), enrollStoreTimeout)
	h, err := s.db.UseEnrollCode(ctx, id, hubKey.String(), ac.remote.String(), s.cfg.tunnelIP)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, store.ErrNotFound):
		unknown.reason = "code withdrawn during the exchange"
		return rec.Hub, software, unknown
	case errors.Is(err, store.ErrCodeUsed):
		return rec.Hub, software, &enrollRefusal{wire.CodeEnrollUsed, "this code has been used already", "code used already"}
	case errors.Is(err, store.ErrCodeExpired):
		return rec.Hub, software, &enrollRefusal{wire.CodeEnrollExpired, "this code has expired", "code expired"}
	case errors.Is(err, store.ErrKeyTaken):
		// Not which hub's: a key is no proof of owning that hub.
		return rec.Hub, software, &enrollRefusal{wire.CodeEnrollKeyTaken, "its key belongs to another hub at this relay",
			fmt.Sprintf("key %s is another hub's", hubKey.Short())}
	case errors.Is(err, store.ErrNameTaken):
		return rec.Hub, software, &enrollRefusal{wire.CodeEnrollName, fmt.Sprintf("a hub is called %q already", rec.Hub), "the name is taken"}
	default:
		s.storeErrLog.Warn("store: enrollment failed", logger.Err, err)
		return rec.Hub, software, &enrollRefusal{wire.CodeUnknown, "the relay cannot enroll hubs right now; try again later", "the store did not answer"}
	}
	// The hub's peer must exist before its agent's tunnel connection
	// arrives, or the agent is told it is not registered and backs off.
	s.refresh()
	result, err := x.Result(enroll.Result{
		Hub:           h.Name,
		TunnelIP:      h.TunnelIP,
		RelayTunnelIP: s.cfg.tunnelIP.String(),
		URL:           s.hubOrigin(h.Name, true) + "/",
		RelayTLS:      net.JoinHostPort(s.cfg.PublicHost, strconv.Itoa(443+s.cfg.PortOffset)),
	})
	if err != nil {
		return h.Name, software, &enrollRefusal{wire.CodeUnknown, "", err.Error()}
	}
	if err := ac.writeControl(result); err != nil {
		// The hub is in the store: its agent learns nothing, but the
		// owner sees the hub and a new code enrolls it after hubrelay hub remove.
		s.log.Warn("hub enrolled, but the agent went away before it heard so", logger.Hub, h.Name, logger.Remote, ac.remote)
	}
	return h.Name, software, nil
}

// CodeTTL is how long a new enrollment code is valid: enroll_ttl, or its
// default for a config that was not validated.
func (c *Config) CodeTTL() time.Duration {
	if c.enrollTTL <= 0 {
		return defaultEnrollTTL
	}
	return c.enrollTTL
}
