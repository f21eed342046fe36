package gopool

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// TestGoReusesAWaitingGoroutine: a function given to Go runs; the goroutine
// that ran it waits for the next, which runs on it rather than on a new
// one; after Linger without work no goroutine is left waiting.
//
// Idle counts a goroutine a moment before it reaches its select, and a Go
// in that moment starts a new goroutine (as it should: none is waiting
// yet). So the test gives Go a few tries, each after a goroutine counts as
// waiting, and asks that one of them ran on a goroutine seen before.
func TestGoReusesAWaitingGoroutine(t *testing.T) {
	ids := make(chan uint64, 1)
	seen := make(map[uint64]bool)
	reused := false
	poll.Until(t, 3*Linger, "goroutines left by earlier tests to leave", func() bool { return Idle() == 0 })
	for try := 0; try < 20 && !reused; try++ {
		poll.Until(t, 5*time.Second, "a goroutine to wait for the next function", func() bool { return try == 0 || Idle() >= 1 })
		runtime.Gosched()
		Go(func() { ids <- goid() })
		id := <-ids
		reused = seen[id]
		seen[id] = true
	}
	if !reused {
		t.Errorf("20 functions ran on %d goroutines, none on one that waited", len(seen))
	}
	poll.Until(t, 3*Linger, "the waiting goroutines to leave after Linger", func() bool { return Idle() == 0 })
}

// TestGoRunsEveryFunctionOnce: many at once, none lost or run twice, and at
// most MaxIdle goroutines stay.
func TestGoRunsEveryFunctionOnce(t *testing.T) {
	const n = 2000
	var wg sync.WaitGroup
	var mu sync.Mutex
	ran := make(map[int]int)
	wg.Add(n)
	for i := range n {
		Go(func() {
			mu.Lock()
			ran[i]++
			mu.Unlock()
			wg.Done()
		})
	}
	wg.Wait()
	for i := range n {
		if ran[i] != 1 {
			t.Fatalf("function %d ran %d times", i, ran[i])
		}
	}
	if k := Idle(); k > MaxIdle {
		t.Errorf("%d goroutines wait, want at most %d", k, MaxIdle)
	}
}

// goid is the running goroutine's id, from its stack trace's first line.
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	var id uint64
	for _, c := range b[len("goroutine "):] {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}
