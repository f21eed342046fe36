package logger

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// The field names every structured line uses for the same thing, so an
// operator can filter all of a hub's (or a user's, an address's) lines.
const (
	Hub       = "hub"       // the hub's name
	User      = "user"      // the account (or "token #N label") acting
	Session   = "session"   // a session or connection id, where there is one
	Remote    = "remote"    // the peer's address, ip:port
	Transport = "transport" // how an agent came: tcp, tls, udp
	Port      = "port"      // a hub or relay port
	Err       = "err"       // what went wrong
	LeftOut   = "left_out"  // how many like lines a rate-limited line stands for
)

// Options says how New writes lines.
type Options struct {
	// Format is "text" (key=value, the default when empty) or "json"
	// (one object a line).
	Format string
	// NoTime leaves the time out, for a sink that stamps lines itself
	// (syslog).
	NoTime bool
}

// New returns the process's logger: lines of level Info and above to w,
// each with its time (RFC 3339, UTC, milliseconds), level and message.
// When w is a *Batch, only lines logged with a Later context wait in it.
func New(w io.Writer, o Options) (*slog.Logger, error) {
	ho := &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: stampRFC3339}
	if o.NoTime {
		ho.ReplaceAttr = dropTime
	}
	var h slog.Handler
	switch o.Format {
	case "", "text":
		h = slog.NewTextHandler(w, ho)
	case "json":
		h = slog.NewJSONHandler(w, ho)
	default:
		return nil, fmt.Errorf("log format %q: use text or json", o.Format)
	}
	if b, ok := w.(*Batch); ok {
		h = batchHandler{next: h, batch: b}
	}
	return slog.New(h), nil
}

const rfc3339Millis = "2006-01-02T15:04:05.000Z07:00"

func stampRFC3339(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey && a.Value.Kind() == slog.KindTime {
		return slog.String(slog.TimeKey, a.Value.Time().UTC().Format(rfc3339Millis))
	}
	return a
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// FromSlog returns a Logf whose lines go to l, for the components that
// take a Logf: the formatted line is the message, at level Warn when it
// starts with "warning:", else Info.
func FromSlog(l *slog.Logger) Logf {
	return func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if strings.HasPrefix(msg, "warning:") {
			l.Warn(msg)
			return
		}
		l.Info(msg)
	}
}

// ToSlog returns a *slog.Logger that writes each line, in the text format
// without the time, to f (nil: nowhere). For tests and embedders that
// collect a Logf's lines.
func ToSlog(f Logf) *slog.Logger {
	if f == nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(lineWriter(f), &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: dropTime}))
}

// lineWriter hands each Write, one line from a slog handler, to a Logf.
type lineWriter Logf

func (w lineWriter) Write(p []byte) (int, error) {
	w("%s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// Limited returns a logger that passes on, per message, at most one line
// per every, and adds to the next line it passes how many it left out
// (field left_out). For lines that can repeat per packet, connection or
// request. Messages must be constants (values go in fields): each one
// keeps a little state for the life of the logger.
func Limited(l *slog.Logger, every time.Duration) *slog.Logger {
	return limited(l, every, time.Now)
}

func limited(l *slog.Logger, every time.Duration, clock func() time.Time) *slog.Logger {
	return slog.New(&limitHandler{next: l.Handler(), st: &limitState{every: every, clock: clock, byMsg: map[string]*limiter{}}})
}

type limitState struct {
	every time.Duration
	clock func() time.Time

	mu    sync.Mutex
	byMsg map[string]*limiter
}

func (st *limitState) limiter(msg string) *limiter {
	st.mu.Lock()
	defer st.mu.Unlock()
	l := st.byMsg[msg]
	if l == nil {
		l = &limiter{every: st.every, clock: st.clock}
		st.byMsg[msg] = l
	}
	return l
}

// limitHandler is Limited's slog.Handler; its WithAttrs and WithGroup
// share the limits, so a line's fields do not make it a new line.
type limitHandler struct {
	next slog.Handler
	st   *limitState
}

var _ slog.Handler = (*limitHandler)(nil)

func (h *limitHandler) Enabled(ctx context.Context, lv slog.Level) bool {
	return h.next.Enabled(ctx, lv)
}

func (h *limitHandler) Handle(ctx context.Context, r slog.Record) error {
	pass, left := h.st.limiter(r.Message).pass()
	if !pass {
		return nil
	}
	if left > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int(LeftOut, left))
	}
	return h.next.Handle(ctx, r)
}

func (h *limitHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &limitHandler{next: h.next.WithAttrs(as), st: h.st}
}

func (h *limitHandler) WithGroup(name string) slog.Handler {
	return &limitHandler{next: h.next.WithGroup(name), st: h.st}
}
