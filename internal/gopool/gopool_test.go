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
func TestGoReusesAWaitingGoroutine(t *testing.T) {
	ids := make(chan uint64, 2)
	Go(func() { ids <- goid() })
	first := <-ids
	poll.Until(t, 5*time.Second, "the goroutine to wait for the next function", func() bool { return Idle() == 1 })
	Go(func() { ids <- goid() })
	if second := <-ids; second != first {
		t.Errorf("the second function ran on goroutine %d, not on the waiting %d", second, first)
	}
	poll.Until(t, 3*Linger, "the waiting goroutine to leave after Linger", func() bool { return Idle() == 0 })
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
