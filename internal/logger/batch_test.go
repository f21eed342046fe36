package logger

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// writes records each Write it gets, as the system call it would be.
type writes struct {
	mu  sync.Mutex
	got []string
	err error
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, string(p))
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

func (w *writes) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.got...)
}

func TestBatchHoldsRequestLinesUntilAnotherLine(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			w := &writes{}
			b := NewBatch(w, time.Hour)
			l, err := New(b, Options{Format: format})
			if err != nil {
				t.Fatal(err)
			}
			later := Later(context.Background())
			l.InfoContext(later, "request", Hub, "cellar", "status", 200)
			l.InfoContext(later, "request", Hub, "attic", "status", 404)
			if got := w.all(); len(got) != 0 {
				t.Fatalf("request lines were written before their interval or another line: %q", got)
			}
			l.Info("hub connected", Hub, "cellar")
			got := w.all()
			if len(got) != 1 {
				t.Fatalf("the request lines and the next line took %d writes, want 1: %q", len(got), got)
			}
			lines := strings.Split(strings.TrimSuffix(got[0], "\n"), "\n")
			if len(lines) != 3 || !strings.Contains(lines[0], "cellar") || !strings.Contains(lines[1], "attic") || !strings.Contains(lines[2], "hub connected") {
				t.Fatalf("lines out of order or missing: %q", lines)
			}
			// A line through a derived logger (With) flushes too.
			l.InfoContext(later, "request", Hub, "cellar")
			l.With(Hub, "cellar").Warn("limits: too many requests")
			if got := w.all(); len(got) != 2 || !strings.Contains(got[1], "request") || !strings.Contains(got[1], "limits") {
				t.Fatalf("a With logger's warning did not write the waiting line with it: %q", got)
			}
		})
	}
}

func TestBatchWritesRequestLinesAfterItsInterval(t *testing.T) {
	w := &writes{}
	b := NewBatch(w, 20*time.Millisecond)
	l, err := New(b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		l.InfoContext(Later(context.Background()), "request", "n", i)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(w.all()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := w.all()
	if len(got) != 1 || strings.Count(got[0], "msg=request") != 3 {
		t.Fatalf("after the interval: %d writes %q, want the three lines in one", len(got), got)
	}
	// The next line starts the next interval.
	l.InfoContext(Later(context.Background()), "request", "n", 3)
	for len(w.all()) == 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := w.all(); len(got) != 2 || !strings.Contains(got[1], "n=3") {
		t.Fatalf("a line after the first interval's write: %q", got)
	}
}

func TestBatchWritesAtItsLimitAndOnFlush(t *testing.T) {
	w := &writes{}
	b := NewBatch(w, time.Hour)
	l, err := New(b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	later := Later(context.Background())
	pad := strings.Repeat("x", 1000)
	n := 0
	for len(w.all()) == 0 && n < 100 {
		l.InfoContext(later, "request", "pad", pad)
		n++
	}
	got := w.all()
	if len(got) != 1 || len(got[0]) < batchLimit || len(got[0]) > batchLimit+1100 {
		t.Fatalf("after %d lines of ~1 KB: writes of %d bytes, want one of about %d", n, len(strings.Join(got, "")), batchLimit)
	}
	if err := b.Flush(); err != nil || len(w.all()) != 1 {
		t.Fatalf("Flush with nothing gathered: %v, %d writes", err, len(w.all()))
	}
	l.InfoContext(later, "request", "last", true)
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := w.all(); len(got) != 2 || !strings.Contains(got[1], "last=true") {
		t.Fatalf("Flush did not write the waiting line: %q", got)
	}
}

func TestBatchReportsAWriteError(t *testing.T) {
	broken := errors.New("broken pipe")
	w := &writes{err: broken}
	b := NewBatch(w, time.Hour)
	l, err := New(b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l.InfoContext(Later(context.Background()), "request")
	if err := b.Flush(); !errors.Is(err, broken) {
		t.Fatalf("Flush after a failed write: %v, want %v", err, broken)
	}
	if err := l.Handler().Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelWarn, "next", 0)); !errors.Is(err, broken) {
		t.Fatalf("a line that failed to go out: %v, want %v", err, broken)
	}
}
