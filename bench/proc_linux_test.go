package bench

import (
	"runtime"
	"testing"
	"time"
)

// TestChildOutlivesEndedThreads: a process the bench started lives on when
// goroutines that locked their threads return, which ends those threads
// (as e2e's network-namespace helper does beside a running capture). A
// child started from an ordinary thread got its parent-death signal when
// one of them took that thread: 9 runs in 10 in a probe.
func TestChildOutlivesEndedThreads(t *testing.T) {
	p, err := StartProc(t.TempDir(), "sleeper", nil, "sleep", "60")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	for i := 0; i < 200; i++ {
		ended := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(ended)
		}()
		<-ended
	}
	if err := p.Wait(300 * time.Millisecond); err == nil {
		t.Fatalf("the child ended when other goroutines' threads did: %v", p.err)
	}
}
