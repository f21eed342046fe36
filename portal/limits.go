package portal

import (
	"sync"
	"time"
)

// The login limits (design-auth.md): failed logins — a wrong name or
// password, a wrong TOTP code — count per account and per source address.
//
//   - An account with accountFailures failures within window is locked for
//     accountLock: its logins are refused unchecked, right password or not.
//     Names that are no account count alike, so a lock tells nothing of
//     which names exist.
//   - A source address (IPv4 address, IPv6 /64) with addrFailures failures
//     within window gets 429 for every login until the oldest of them is
//     older than window.
//
// Both live in memory (a relay restart forgets them) and are bounded by
// maxTracked entries each; past that, an arbitrary entry is forgotten.
const (
	accountFailures = 5
	addrFailures    = 20
	window          = 15 * time.Minute
	accountLock     = 15 * time.Minute
	maxTracked      = 100_000
)

// limits keeps the failure counts.
type limits struct {
	mu       sync.Mutex
	accounts map[string]*failures
	addrs    map[string]*failures
	swept    time.Time
}

// failures is one key's recent failures, oldest first, and its lock.
type failures struct {
	at     []time.Time // within window, at most the limit's count
	locked time.Time   // locked until (accounts only)
}

func newLimits() *limits {
	return &limits{accounts: map[string]*failures{}, addrs: map[string]*failures{}}
}

// addrRefused says whether logins from addr get 429 now.
func (l *limits) addrRefused(addr string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.addrs[addr]
	return f != nil && f.full(addrFailures, now)
}

// accountLocked says whether account's logins are refused unchecked now.
func (l *limits) accountLocked(account string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.accounts[account]
	return f != nil && now.Before(f.locked)
}

// fail counts a failed login and reports whether it locked the account
// just now.
func (l *limits) fail(account, addr string, now time.Time) (locked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
	l.get(l.addrs, addr).add(addrFailures, now)
	f := l.get(l.accounts, account)
	f.add(accountFailures, now)
	if f.full(accountFailures, now) {
		f.locked, f.at = now.Add(accountLock), f.at[:0]
		return true
	}
	return false
}

// succeeded forgets an account's failures after a full login. The
// address's stay: one good account must not clear an address that is
// guessing at others.
func (l *limits) succeeded(account string) {
	l.mu.Lock()
	delete(l.accounts, account)
	l.mu.Unlock()
}

func (l *limits) get(m map[string]*failures, key string) *failures {
	f := m[key]
	if f == nil {
		if len(m) >= maxTracked {
			for k := range m {
				delete(m, k)
				break
			}
		}
		f = &failures{}
		m[key] = f
	}
	return f
}

// add records a failure, keeping at most limit of them.
func (f *failures) add(limit int, now time.Time) {
	if len(f.at) == limit {
		copy(f.at, f.at[1:])
		f.at = f.at[:limit-1]
	}
	f.at = append(f.at, now)
}

// full: limit failures, all within window of now.
func (f *failures) full(limit int, now time.Time) bool {
	return len(f.at) >= limit && now.Sub(f.at[len(f.at)-limit]) < window
}

// sweepLocked drops entries with nothing in force, at most once a minute.
func (l *limits) sweepLocked(now time.Time) {
	if now.Sub(l.swept) < time.Minute {
		return
	}
	l.swept = now
	for _, m := range []map[string]*failures{l.accounts, l.addrs} {
		for k, f := range m {
			if !now.Before(f.locked) && (len(f.at) == 0 || now.Sub(f.at[len(f.at)-1]) >= window) {
				delete(m, k)
			}
		}
	}
}
