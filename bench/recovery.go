package bench

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hubtunnel/hubtunnel/testbed"
)

// UntilOK requests url (a /ping of the BulkServer, through the relay) on a
// new connection every 10 ms until one answers 200, and returns the time
// from from until that answer arrived. Each attempt may take 1 s.
func UntilOK(url string, from time.Time, timeout time.Duration) (time.Duration, error) {
	c := LoopbackClient(false, time.Second)
	deadline := time.Now().Add(timeout)
	last := "no attempt"
	for time.Now().Before(deadline) {
		resp, err := c.Get(url)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(body) == "ok" {
				return time.Since(from), nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("bench: %s did not answer within %v (last: %s)", testbed.Redacted(url), timeout, last)
}
