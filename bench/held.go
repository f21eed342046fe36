package bench

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Held is what HoldSessions measured.
type Held struct {
	Before, After Mem // the agent's memory before the first session and with all held
	Rounds        int // rounds of calls until the agent saw them all at once
}

// HoldSessions opens n sessions through the relay at url, each its own
// kept-alive connection, and keeps them all in use: rounds of one call on
// every connection, 50 at a time (the relay drops a connection to a hub
// after 10 s idle), until the agent's active reports n at once, at most 10
// rounds. It reads the agent's memory (mem) before and then, with all n
// held, and closes the connections when done.
func HoldSessions(url string, n int, mem func() (Mem, error), active func() (int, error)) (Held, error) {
	var h Held
	var err error
	if h.Before, err = mem(); err != nil {
		return h, err
	}
	clients := make([]*http.Client, n)
	for i := range clients {
		clients[i] = LoopbackClient(true, 30*time.Second)
		defer clients[i].CloseIdleConnections()
	}
	const rounds = 10
	for h.Rounds < rounds {
		h.Rounds++
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			first error
		)
		sem := make(chan struct{}, 50)
		for _, c := range clients {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				if _, err := call(c, url); err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if first != nil {
			return h, first
		}
		a, err := active()
		if err != nil {
			return h, err
		}
		if a >= n {
			h.After, err = mem()
			return h, err
		}
	}
	return h, fmt.Errorf("bench: the agent did not see %d sessions at once within %d rounds of calls", n, rounds)
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// held is the "held sessions" phase: the agent's memory with Options.Held
// sessions held open, against BRIEF.md's budget (48 MB with 1,500).
func (ru *run) held(relay *Relay, agent *Agent) error {
	n := ru.o.Held
	h, err := HoldSessions(relay.TokenURL("demo", 2001, "/"), n, agent.Proc.Mem, func() (int, error) {
		st, err := agent.Status()
		return st.SessionsActive, err
	})
	if err != nil {
		return err
	}
	perSession := float64(h.After.RSS-h.Before.RSS) / 1024 / float64(n)
	val := fmt.Sprintf("%s (%.1f KiB a session)", fmtMB(h.After.RSS), perSession)
	ru.r.add("memory", fmt.Sprintf("agent RSS with %d sessions held open", n), val, "≤ 48 MB with 1,500", ptr(n < 1500 || h.After.RSS <= 48e6))
	ru.r.section("Memory with sessions held", `%d clients, each with its own kept-alive connection through the relay's port 2001+offset to
ccusim's XML-RPC, make a getValue call each, 50 at a time, in rounds until the agent's status API counts all %d as
active at once (%d rounds); then the agent's VmRSS is read: %s, from %s before the first session
(%.1f KiB a session). The agent is the one the recovery phase started last, with its default memory limit
(36 MiB soft, GOMEMLIMIT-like). The budget (BRIEF.md) is 48 MB with 1,500 held; a run with fewer has no verdict.`,
		n, n, h.Rounds, fmtMB(h.After.RSS), fmtMB(h.Before.RSS), perSession)
	return nil
}
