package logger

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Batch is a writer for New's logger that gathers the lines of a busy
// process and writes them on together: a line logged with a context from
// Later (the relay's one line per request) waits up to the Batch's
// interval, or until 32 KiB have gathered; any other line is written at
// once, with everything gathered before it, in order.
//
// One write(2) per request line cost the relay about a tenth of its CPU
// for small requests: a blocking system call of a Go program also wakes
// the runtime's monitor thread (sysmon) when it sleeps, which then polls
// every 20 µs for a millisecond. A process killed with SIGKILL, or by a panic,
// loses the request lines of its last interval; call Flush before a
// normal exit.
type Batch struct {
	w     io.Writer
	every time.Duration
	timer *time.Timer

	mu  sync.Mutex
	buf []byte
	err error // the last write's; kept for Flush
}

// batchLimit is how much a Batch gathers before it writes without waiting
// for its interval.
const batchLimit = 32 << 10

// NewBatch returns a Batch writing to w, lines from Later contexts at most
// every interval after them.
func NewBatch(w io.Writer, every time.Duration) *Batch {
	b := &Batch{w: w, every: every}
	b.timer = time.AfterFunc(time.Hour, func() { b.Flush() })
	b.timer.Stop()
	return b
}

// Write gathers p, a line, arming the interval's timer if nothing was
// gathered before it; it writes at once only when batchLimit has
// gathered. It reports the last write error it saw.
func (b *Batch) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf) == 0 {
		b.timer.Reset(b.every)
	}
	b.buf = append(b.buf, p...)
	if len(b.buf) >= batchLimit {
		b.flushLocked()
	}
	return len(p), b.err
}

// Flush writes what has gathered.
func (b *Batch) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	return b.err
}

func (b *Batch) flushLocked() {
	if len(b.buf) == 0 {
		return
	}
	_, b.err = b.w.Write(b.buf)
	if cap(b.buf) > 2*batchLimit { // grown by a line of over batchLimit: not kept
		b.buf = nil
	} else {
		b.buf = b.buf[:0]
	}
	b.timer.Stop()
}

type laterKey struct{}

// Later returns ctx marked so that a line logged with it through a Batch
// may wait for the Batch's interval.
func Later(ctx context.Context) context.Context {
	return context.WithValue(ctx, laterKey{}, true)
}

func later(ctx context.Context) bool {
	v, _ := ctx.Value(laterKey{}).(bool)
	return v
}

// batchHandler is New's handler over a Batch: lines without Later are
// flushed as they are written.
type batchHandler struct {
	next  slog.Handler
	batch *Batch
}

var _ slog.Handler = batchHandler{}

func (h batchHandler) Enabled(ctx context.Context, lv slog.Level) bool {
	return h.next.Enabled(ctx, lv)
}

func (h batchHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.next.Handle(ctx, r)
	if later(ctx) {
		return err
	}
	if ferr := h.batch.Flush(); err == nil {
		err = ferr
	}
	return err
}

func (h batchHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return batchHandler{next: h.next.WithAttrs(as), batch: h.batch}
}

func (h batchHandler) WithGroup(name string) slog.Handler {
	return batchHandler{next: h.next.WithGroup(name), batch: h.batch}
}
