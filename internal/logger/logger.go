// Package logger is hubtunnel's logging: a printf-like Logf that every
// component takes explicitly (no global logger), as wireguard-go's and
// Tailscale's components do, and the structured *slog.Logger the binaries
// write their lines with (slog.go).
//
// Neither must ever be handed a secret; every caller formats its own
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
	l := &limiter{every: every, clock: clock}
	return func(format string, args ...any) {
		pass, left := l.pass()
		if !pass {
			return
		}
		if left > 0 {
			format += " (and %d similar lines left out)"
			args = append(args, left)
		}
		f(format, args...)
	}
}

// limiter passes one event per every and counts the ones it holds back:
// the rate limit of RateLimited and of Limited's slog lines.
type limiter struct {
	every time.Duration
	clock func() time.Time

	mu      sync.Mutex
	last    time.Time
	dropped int
}

// pass reports whether an event now may be logged and, if so, how many
// were left out since the last one that was.
func (l *limiter) pass() (ok bool, leftOut int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.dropped++
		return false, 0
	}
	leftOut, l.last, l.dropped = l.dropped, now, 0
	return true, leftOut
}
