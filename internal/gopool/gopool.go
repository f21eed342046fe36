// Package gopool runs short functions on goroutines that are kept for a
// moment after they are done, for the next one.
//
// The sessions' copy loops (portmap) start when a connection becomes
// readable, and end when it has nothing more for now: nothing waits while
// a session is quiet. Started with `go`, each of them began on a new
// goroutine's small stack and grew it, copy by copy, through the
// netstack's deep write path: at one small request after another, that
// stack growth was a sixth of what a request cost the agent. A goroutine
// from Go keeps the stack it grew while it waits for the next function,
// and leaves after Linger without one, so a quiet hub holds none.
package gopool

import (
	"sync/atomic"
	"time"
)

const (
	// Linger is how long a goroutine waits for the next function.
	Linger = 2 * time.Second
	// MaxIdle is how many goroutines may wait at once; one that would be
	// one more leaves at once.
	MaxIdle = 64
)

var (
	work = make(chan func()) // unbuffered: a send succeeds only into a waiting goroutine
	idle atomic.Int32
)

// Go runs f on a waiting goroutine, or on a new one when none is waiting.
// Like the go statement, it does not wait for f.
func Go(f func()) {
	select {
	case work <- f:
	default:
		go run(f)
	}
}

func run(f func()) {
	var t *time.Timer
	for {
		f()
		f = nil
		if idle.Add(1) > MaxIdle {
			idle.Add(-1)
			return
		}
		if t == nil {
			t = time.NewTimer(Linger)
		} else {
			t.Reset(Linger)
		}
		select {
		case f = <-work:
			idle.Add(-1)
			t.Stop()
		case <-t.C:
			idle.Add(-1)
			return
		}
	}
}

// Idle reports how many goroutines wait for a function now.
func Idle() int { return int(idle.Load()) }
