package bench

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hubtunnel/hubtunnel/ccusim"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// The XML-RPC call timed: getValue of the switch on ccusim's BidCos-RF
// port, one of the smallest calls an app makes (about 250 bytes each way
// plus HTTP headers).
var (
	rpcMethod = "getValue"
	rpcArgs   = []any{"NEQ0000002:1", "STATE"}
)

// Latencies are the durations of single calls, in the order made.
type Latencies []time.Duration

// Quantile returns the q-quantile (0 ≤ q ≤ 1) by the nearest-rank method.
func (l Latencies) Quantile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// CompareLatency times n calls to each URL, each URL on its own kept-alive
// connection, alternating between the two in blocks of 100 calls so that
// both see the same machine. The first warm calls of each are not timed.
func CompareLatency(direct, tunnel string, n, warm int) (Latencies, Latencies, error) {
	if n < 1 || n > 100000 {
		return nil, nil, fmt.Errorf("bench: %d calls: want 1–100000", n)
	}
	cd, ct := LoopbackClient(true, 10*time.Second), LoopbackClient(true, 10*time.Second)
	defer cd.CloseIdleConnections()
	defer ct.CloseIdleConnections()
	for range warm {
		if _, err := call(cd, direct); err != nil {
			return nil, nil, err
		}
		if _, err := call(ct, tunnel); err != nil {
			return nil, nil, err
		}
	}
	ld, lt := make(Latencies, 0, n), make(Latencies, 0, n)
	for len(ld) < n {
		for range min(100, n-len(ld)) {
			d, err := call(cd, direct)
			if err != nil {
				return nil, nil, err
			}
			ld = append(ld, d)
		}
		for range min(100, n-len(lt)) {
			d, err := call(ct, tunnel)
			if err != nil {
				return nil, nil, err
			}
			lt = append(lt, d)
		}
	}
	return ld, lt, nil
}

func call(c *http.Client, url string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	v, err := ccusim.Call(ctx, c, url, rpcMethod, rpcArgs...)
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("bench: %s at %s: %w", rpcMethod, testbed.Redacted(url), err)
	}
	if _, ok := v.(bool); !ok {
		return 0, fmt.Errorf("bench: %s at %s = %v, want a boolean", rpcMethod, testbed.Redacted(url), v)
	}
	return d, nil
}

// Sessions is the result of Concurrent.
type Sessions struct {
	Opened     int // connections whose first call succeeded
	PeakActive int // the agent's sessions_active while all were open
	Errors     int // failed calls
	FirstErr   error
}

// Concurrent opens n connections to url, each with one call, keeps them all
// open, then makes a second call on every one at once. active, if set,
// reports the agent's sessions in flight while all n are open.
func Concurrent(url string, n int, active func() (int, error)) Sessions {
	var (
		mu  sync.Mutex
		res Sessions
		wg  sync.WaitGroup
	)
	record := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			res.Errors++
			if res.FirstErr == nil {
				res.FirstErr = err
			}
		}
	}
	clients := make([]*http.Client, n)
	for i := range clients {
		clients[i] = LoopbackClient(true, 30*time.Second)
		defer clients[i].CloseIdleConnections()
	}
	ok := make([]bool, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := call(clients[i], url)
			ok[i] = err == nil
			record(err)
		}()
	}
	wg.Wait()
	for _, o := range ok {
		if o {
			res.Opened++
		}
	}
	if active != nil {
		if a, err := active(); err == nil {
			res.PeakActive = a
		}
	}
	start := make(chan struct{})
	for i := range n {
		if !ok[i] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := call(clients[i], url)
			record(err)
		}()
	}
	close(start)
	wg.Wait()
	return res
}
