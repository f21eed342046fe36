// Package procs runs the relay on one P while it is nearly idle and on the
// runtime's default number of Ps once it is busy.
//
// A request crosses about eight goroutines in the relay (the user's
// connection, the netstack's writer and TCP worker, WireGuard's reader,
// crypto workers and per-peer routines, the agent connection). With idle Ps
// each handoff wakes another thread, which spins, finds little and sleeps
// again: on a 2-core host a relay serving one request after another spent
// 27–33 % less CPU per request on one P, and in the peers phase of
// make bench 14–25 % less per GB (BENCHMARKS.md). Once the relay keeps
// most of a core busy, one P would make its users wait, so it goes back to
// all of them.
package procs

import (
	"os"
	"runtime"
	"time"
)

// Policy decides from one sample of the process's CPU use, in cores, how
// many Ps to run on: Max once the samples stay above Up for Rise samples
// in a row, one once they stay below Down for Fall samples in a row. The
// way up is quick (a busy relay on one P makes its users wait), the way
// down slow (a lull between bursts should not cost a switch each time).
type Policy struct {
	Max        int     // the runtime's default
	Up, Down   float64 // cores
	Rise, Fall int     // samples in a row

	one    bool // running on one P
	streak int  // samples in a row that argue for a switch
}

// DefaultPolicy is the relay's, for procs Ps by default and one sample a
// second. On one P the relay reads less CPU for the same load than on many
// (0.7 to 0.9 times as much, measured: no spinning threads), so Down, read
// on many Ps, lands on one P below Up, and Up is below one core: one P
// nearly busy is when users would start to wait.
func DefaultPolicy(procs int) Policy {
	return Policy{Max: procs, Up: 0.7, Down: 0.6, Rise: 2, Fall: 10}
}

// Next takes one sample and returns the number of Ps to run on.
func (p *Policy) Next(cores float64) int {
	switch {
	case p.one && cores > p.Up, !p.one && cores < p.Down:
		p.streak++
	default:
		p.streak = 0
	}
	if p.one && p.streak >= p.Rise || !p.one && p.streak >= p.Fall {
		p.one, p.streak = !p.one, 0
	}
	if p.one {
		return 1
	}
	return p.Max
}

// Adapt samples the process's CPU time every interval and sets GOMAXPROCS
// as policy says, until stop is closed. report is told of each change: the
// new number of Ps and the sample that made it. Adapt does nothing when
// the environment sets GOMAXPROCS, when the runtime's default is one P, or
// where the process's CPU time cannot be read.
func Adapt(stop <-chan struct{}, interval time.Duration, policy func(procs int) Policy, report func(procs int, cores float64)) {
	def := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") != "" || def <= 1 {
		return
	}
	last, err := cpuTime()
	if err != nil {
		return
	}
	p := policy(def)
	cur := def
	t := time.NewTicker(interval)
	defer t.Stop()
	lastAt := time.Now()
	defer func() {
		if cur != def {
			runtime.SetDefaultGOMAXPROCS()
		}
	}()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			used, err := cpuTime()
			if err != nil {
				return
			}
			cores := (used - last).Seconds() / now.Sub(lastAt).Seconds()
			last, lastAt = used, now
			next := p.Next(cores)
			if next == cur {
				continue
			}
			if next == def {
				// Back to the runtime's own choice, which follows the
				// container's CPU limit.
				runtime.SetDefaultGOMAXPROCS()
			} else {
				runtime.GOMAXPROCS(next)
			}
			cur = next
			if report != nil {
				report(next, cores)
			}
		}
	}
}
