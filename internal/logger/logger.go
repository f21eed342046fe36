// Package logger is hubtunnel's one logging type: a printf-like function
// that every component takes explicitly (no global logger), as
// wireguard-go's and Tailscale's components do.
//
// A Logf must never be handed a secret; every caller formats its own
// values, and types that hold secrets (vpn.PrivateKey) print as a
// placeholder.
package logger

import (
	"sync"
	"time"
)

// Logf logs one line. Implementations add their own newline and must be
// safe for concurrent use.
type Logf func(format string, args ...any)

// Discard logs nothing.
func Discard(string, ...any) {}

// OrDiscard returns f, or Discard when f is nil, so a zero-value config
// field works.
func OrDiscard(f Logf) Logf {
	if f == nil {
		return Discard
	}
	return f
}

// WithPrefix returns a Logf that puts prefix in front of every line.
func WithPrefix(f Logf, prefix string) Logf {
	f = OrDiscard(f)
	return func(format string, args ...any) { f(prefix+format, args...) }
}

// RateLimited returns a Logf that passes on at most one line per every,
// and says how many it left out in the next line it passes. For paths that
// can log per packet or per connection attempt.
func RateLimited(f Logf, every time.Duration) Logf {
	return rateLimited(f, every, time.Now)
}

func rateLimited(f Logf, every time.Duration, clock func() time.Time) Logf {
	f = OrDiscard(f)
	var (
		mu      sync.Mutex
		last    time.Time
		dropped int
	)
	return func(format string, args ...any) {
		mu.Lock()
		now := clock()
		if !last.IsZero() && now.Sub(last) < every {
			dropped++
			mu.Unlock()
			return
		}
		n := dropped
		last, dropped = now, 0
		mu.Unlock()
		if n > 0 {
			format += " (and %d similar lines left out)"
			args = append(args, n)
		}
		f(format, args...)
	}
}
