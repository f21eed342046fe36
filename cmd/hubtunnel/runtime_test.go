package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
)

// hubtunnel run limits the heap and runs on one P, unless the environment
// says otherwise.
func TestRuntimeDefaults(t *testing.T) {
	procs, limit := runtime.GOMAXPROCS(0), debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		runtime.GOMAXPROCS(procs)
		debug.SetMemoryLimit(limit)
	})
	for _, c := range []struct {
		name             string
		maxprocs, memlim string
		wantProcs        int
		wantLimit        int64
	}{
		{"defaults", "", "", defaultMaxProcs, defaultMemoryLimit},
		{"the environment's", "3", "100MiB", 3, math.MaxInt64},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("GOMAXPROCS", c.maxprocs)
			t.Setenv("GOMEMLIMIT", c.memlim)
			// The runtime read the environment at start; what this process
			// was started with stands for it.
			runtime.GOMAXPROCS(3)
			debug.SetMemoryLimit(math.MaxInt64)
			runtimeDefaults()
			if got := runtime.GOMAXPROCS(0); got != c.wantProcs {
				t.Errorf("GOMAXPROCS %d, want %d", got, c.wantProcs)
			}
			if got := debug.SetMemoryLimit(-1); got != c.wantLimit {
				t.Errorf("memory limit %d, want %d", got, c.wantLimit)
			}
		})
	}
}
