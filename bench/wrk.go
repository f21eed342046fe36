package bench

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// WrkResult is what one wrk run reports.
type WrkResult struct {
	Requests int     // completed requests
	PerSec   float64 // "Requests/sec"
}

// Wrk runs wrk with 2 threads and conns kept-alive connections against
// url for d, with headers ("Name: value") added to every request. A socket
// error or an answer other than 2xx/3xx is an error: the figure would not
// be that of the small request.
func Wrk(url string, conns int, d time.Duration, headers []string) (WrkResult, error) {
	path, err := exec.LookPath("wrk")
	if err != nil {
		return WrkResult{}, errors.New("bench: wrk is not installed: scripts/bench-deps.sh installs it")
	}
	args := []string{"-t2", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", max(1, int(d.Seconds()))), "--timeout", "10s"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append(args, url)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return WrkResult{}, fmt.Errorf("bench: wrk: %v: %s", err, firstLine(string(out)))
	}
	return ParseWrk(string(out))
}

var (
	wrkRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	wrkPerSec   = regexp.MustCompile(`(?m)^Requests/sec:\s*([\d.]+)`)
	wrkTrouble  = regexp.MustCompile(`(?m)^\s*(Socket errors:.*|Non-2xx or 3xx responses:.*)$`)
)

// ParseWrk reads wrk's summary.
func ParseWrk(out string) (WrkResult, error) {
	if m := wrkTrouble.FindStringSubmatch(out); m != nil {
		return WrkResult{}, fmt.Errorf("bench: wrk: %s", strings.TrimSpace(m[1]))
	}
	n, ps := wrkRequests.FindStringSubmatch(out), wrkPerSec.FindStringSubmatch(out)
	if n == nil || ps == nil {
		return WrkResult{}, fmt.Errorf("bench: wrk printed no summary: %.200q", out)
	}
	var r WrkResult
	r.Requests, _ = strconv.Atoi(n[1])
	r.PerSec, _ = strconv.ParseFloat(ps[1], 64)
	if r.Requests == 0 {
		return WrkResult{}, errors.New("bench: wrk completed no request")
	}
	return r, nil
}
