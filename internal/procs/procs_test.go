package procs

import (
	"runtime"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

func TestPolicy(t *testing.T) {
	p := DefaultPolicy(4)
	step := func(cores float64, want int) {
		t.Helper()
		if got := p.Next(cores); got != want {
			t.Fatalf("after %.2f cores: %d Ps, want %d", cores, got, want)
		}
	}
	// Nine quiet seconds and a busier one: no switch.
	for range 9 {
		step(0.1, 4)
	}
	step(0.6, 4)
	// Ten quiet seconds in a row: one P.
	for range 9 {
		step(0.1, 4)
	}
	step(0.59, 1)
	// One busy second is a burst, two in a row are load.
	step(0.9, 1)
	step(0.5, 1)
	step(0.71, 1)
	step(1.0, 4)
	// Between Down and Up nothing changes, either way.
	for range 30 {
		step(0.65, 4)
	}
	for range 9 {
		step(0.3, 4)
	}
	step(0.3, 1)
	for range 30 {
		step(0.65, 1)
	}
}

// TestAdapt runs the real sampler on this test process: idle, it goes to
// one P; a goroutine that spins sends it back to the default.
func TestAdapt(t *testing.T) {
	def := runtime.GOMAXPROCS(0)
	if def < 2 {
		t.Skip("one CPU: nothing to adapt")
	}
	t.Setenv("GOMAXPROCS", "") // Adapt does nothing when it is set
	policy := func(procs int) Policy {
		// Thresholds far from what idle and spinning read, on a shared
		// machine too.
		return Policy{Max: procs, Up: 0.3, Down: 0.2, Rise: 2, Fall: 3}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	reports := make(chan int, 16)
	go func() {
		defer close(done)
		Adapt(stop, 50*time.Millisecond, policy, func(n int, _ float64) { reports <- n })
	}()
	defer func() {
		close(stop)
		<-done
		if got := runtime.GOMAXPROCS(0); got != def {
			t.Errorf("after Adapt: GOMAXPROCS %d, want the default %d back", got, def)
		}
	}()
	poll.Until(t, 10*time.Second, "one P while idle", func() bool { return runtime.GOMAXPROCS(0) == 1 })
	if n := <-reports; n != 1 {
		t.Fatalf("first report: %d Ps, want 1", n)
	}
	spin := make(chan struct{})
	go func() {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			select {
			case <-spin:
				return
			default:
			}
		}
	}()
	defer close(spin)
	poll.Until(t, 10*time.Second, "the default Ps back under load", func() bool { return runtime.GOMAXPROCS(0) == def })
	if n := <-reports; n != def {
		t.Fatalf("second report: %d Ps, want %d", n, def)
	}
}

func TestAdaptLeavesASetGOMAXPROCSAlone(t *testing.T) {
	t.Setenv("GOMAXPROCS", "2")
	returned := make(chan struct{})
	go func() {
		Adapt(make(chan struct{}), time.Millisecond, DefaultPolicy, nil)
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("Adapt kept running with GOMAXPROCS set")
	}
}
